"""Settings are read once at start; a wrong one must stop the service with the variable named,
and the Duo secret key must never show up in anything printed or logged."""

import json

import pytest

from services.settings import (
    ConfigError,
    fetcher_settings,
    parse_duration,
    planner_settings,
    writer_settings,
)

# Distinctive, so a leak anywhere is found by a plain substring search.
SECRET = "sKeY-Leak-Canary-7f3a9c2e1b84d"
SECRET_NAME = "projects/acme-prod/secrets/duo-skey/versions/3"
HOST = "api-1a2b3c4d.duosecurity.com"
IKEY = "DIWJ8X6AEYOR5OMC6TQ1"


class Reader:
    """The injected Secret Manager reader: records the names asked for."""

    def __init__(self, value=SECRET + "\n", error=None):
        self.value = value
        self.error = error
        self.names = []

    def __call__(self, name):
        self.names.append(name)
        if self.error is not None:
            raise self.error
        return self.value


def fetcher_env(**changes):
    env = {
        "GOOGLE_CLOUD_PROJECT": "acme-prod",
        "DUO_API_HOST": HOST,
        "DUO_IKEY": IKEY,
        "DUO_SKEY_SECRET": SECRET_NAME,
    }
    env.update(changes)
    return {name: value for name, value in env.items() if value is not None}


def fetcher_error(env, reader=None):
    with pytest.raises(ConfigError) as caught:
        fetcher_settings(env, reader or Reader())
    return str(caught.value)


# --- required variables ---------------------------------------------------------------------


@pytest.mark.parametrize("variable", ["GOOGLE_CLOUD_PROJECT", "DUO_API_HOST", "DUO_IKEY"])
@pytest.mark.parametrize("value", [None, "", "   "])
def test_fetcher_names_a_missing_required_variable(variable, value):
    message = fetcher_error(fetcher_env(**{variable: value}))
    assert variable in message
    assert "required" in message


def test_fetcher_without_any_secret_names_both_ways_to_give_it():
    message = fetcher_error(fetcher_env(DUO_SKEY_SECRET=None))
    assert "DUO_SKEY_SECRET" in message
    assert "DUO_SKEY" in message


def test_planner_and_writer_need_the_project():
    with pytest.raises(ConfigError, match="GOOGLE_CLOUD_PROJECT"):
        planner_settings({})
    with pytest.raises(ConfigError, match="GOOGLE_CLOUD_PROJECT"):
        writer_settings({"GCS_BUCKET": "b"})


def test_writer_needs_a_bucket():
    with pytest.raises(ConfigError, match="GCS_BUCKET"):
        writer_settings({"GOOGLE_CLOUD_PROJECT": "p"})


# --- the secret key -------------------------------------------------------------------------


def test_secret_is_read_through_the_reader_with_the_exact_resource_name():
    reader = Reader()
    settings = fetcher_settings(fetcher_env(), reader)
    assert reader.names == [SECRET_NAME]
    source = settings.sources["default"]
    assert source.skey.reveal() == SECRET  # the trailing newline of the stored value is dropped
    assert source.ikey == IKEY
    assert source.endpoint.host == HOST
    assert (source.signature_version, source.digest) == (5, "sha512")


@pytest.mark.parametrize(
    "name",
    [
        "duo-skey",
        "projects/acme-prod/secrets/duo-skey",  # a secret, not a version of it
        "projects/acme-prod/secrets/duo-skey/versions/",
        "https://secretmanager.googleapis.com/v1/projects/p/secrets/s/versions/1",
    ],
)
def test_a_malformed_secret_name_is_refused_before_reading(name):
    reader = Reader()
    message = fetcher_error(fetcher_env(DUO_SKEY_SECRET=name), reader)
    assert "DUO_SKEY_SECRET" in message
    assert "projects/PROJECT/secrets/NAME/versions/VERSION" in message
    assert reader.names == []


def test_a_reader_failure_names_the_variable_but_not_the_secret_or_the_failure_text():
    failure = PermissionError(f"denied for token ya29.SENSITIVE while reading {SECRET}")
    with pytest.raises(ConfigError) as caught:
        fetcher_settings(fetcher_env(), Reader(error=failure))
    message = str(caught.value)
    assert "DUO_SKEY_SECRET" in message
    assert SECRET_NAME in message
    assert SECRET not in message
    assert "SENSITIVE" not in message
    assert "denied" not in message
    # Nor may a traceback print the reader's exception as the cause or context.
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_plain_key_is_refused_on_cloud_run():
    env = fetcher_env(DUO_SKEY_SECRET=None, DUO_SKEY=SECRET, K_SERVICE="duo-fetcher")
    message = fetcher_error(env)
    assert "Cloud Run" in message
    assert "DUO_SKEY_SECRET" in message
    assert SECRET not in message


def test_plain_key_is_accepted_locally_without_a_reader_call():
    reader = Reader()
    settings = fetcher_settings(fetcher_env(DUO_SKEY_SECRET=None, DUO_SKEY=SECRET), reader)
    assert settings.sources["default"].skey.reveal() == SECRET
    assert reader.names == []


def test_the_secret_never_shows_in_the_settings_repr_or_str():
    for env in (fetcher_env(), fetcher_env(DUO_SKEY_SECRET=None, DUO_SKEY=SECRET)):
        settings = fetcher_settings(env, Reader())
        source = settings.sources["default"]
        assert source.skey.reveal() == SECRET
        for text in (repr(settings), str(settings), repr(source), str(source), f"{source}"):
            assert SECRET not in text
        assert "Secret('********')" in repr(source)


@pytest.mark.parametrize(
    "env",
    [
        fetcher_env(DUO_SKEY_SECRET=None, DUO_SKEY=SECRET, K_SERVICE="duo-fetcher"),
        fetcher_env(DUO_SKEY=SECRET, DUO_IKEY=None),
        fetcher_env(DUO_SKEY=SECRET, DUO_SIGNATURE_VERSION="3"),
        fetcher_env(DUO_SKEY=SECRET, DUO_API_HOST="ftp://duo"),
        fetcher_env(DUO_SKEY=SECRET, ENRICH_RECORDS="maybe"),
        # The key pasted into the variable meant for its Secret Manager name.
        fetcher_env(DUO_SKEY_SECRET=SECRET),
        fetcher_env(
            DUO_SOURCES=json.dumps(
                [{"id": "eu", "api_host": HOST, "ikey": IKEY, "skey_secret": SECRET}]
            )
        ),
        fetcher_env(
            DUO_SOURCES=json.dumps([{"id": "eu", "api_host": HOST, "skey": SECRET}]),
        ),
        fetcher_env(DUO_SOURCES=f'[{{"id": "eu", "skey": "{SECRET}",]'),
    ],
)
def test_no_config_error_carries_the_secret(env):
    reader = Reader(error=RuntimeError(SECRET))
    assert SECRET not in fetcher_error(env, reader)


@pytest.mark.parametrize("field", ["skey_secret", "skey"])
def test_a_secret_that_is_not_a_string_is_named(field):
    env = fetcher_env(
        DUO_SOURCES=json.dumps([{"id": "eu", "api_host": HOST, "ikey": IKEY, field: 12345}])
    )
    assert "DUO_SOURCES[0]" in fetcher_error(env)


# --- durations, numbers, flags ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("15m", 900),
        ("36h", 129_600),
        ("7d", 604_800),
        ("0s", 0),
        (" 2H ", 7_200),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text, "LOOKBACK") == seconds


@pytest.mark.parametrize("text", ["", "15", "m", "1.5h", "-5m", "5w", "5 m", "1h30m", "ten m"])
def test_parse_duration_refuses_with_the_setting_and_value_named(text):
    with pytest.raises(ConfigError) as caught:
        parse_duration(text, "FETCH_TIME_BUDGET")
    assert "FETCH_TIME_BUDGET" in str(caught.value)
    assert repr(text) in str(caught.value)


@pytest.mark.parametrize("value", ["1 day", "24", "-1h", "soon"])
def test_bad_lookback_is_named(value):
    with pytest.raises(ConfigError, match="LOOKBACK"):
        planner_settings({"GOOGLE_CLOUD_PROJECT": "p", "LOOKBACK": value})


def test_lookback_is_capped_at_duos_180_days():
    ok = planner_settings({"GOOGLE_CLOUD_PROJECT": "p", "LOOKBACK": "180d"})
    assert ok.lookback_seconds == 180 * 86_400
    for value in ("181d", "4321h"):
        with pytest.raises(ConfigError, match=r"LOOKBACK.*180"):
            planner_settings({"GOOGLE_CLOUD_PROJECT": "p", "LOOKBACK": value})


def test_check_batch_defaults_to_half_an_hour_and_takes_a_minute_to_six_hours():
    assert planner_settings({"GOOGLE_CLOUD_PROJECT": "p"}).repair_batch_ms == 1_800_000
    for value, ms in (("2m", 120_000), ("60s", 60_000), ("6h", 21_600_000)):
        batch = planner_settings({"GOOGLE_CLOUD_PROJECT": "p", "REPAIR_CHECK_BATCH": value})
        assert batch.repair_batch_ms == ms


def test_a_quiet_source_is_read_every_five_minutes_by_default_and_in_whole_minutes():
    assert planner_settings({"GOOGLE_CLOUD_PROJECT": "p"}).quiet_read_every_ms == 300_000
    every = planner_settings({"GOOGLE_CLOUD_PROJECT": "p", "QUIET_READ_EVERY": "1m"})
    assert every.quiet_read_every_ms == 60_000


def test_plan_delay_defaults_to_duos_two_minutes_and_never_less():
    assert planner_settings({"GOOGLE_CLOUD_PROJECT": "p"}).delay_seconds == 120
    later = planner_settings({"GOOGLE_CLOUD_PROJECT": "p", "PLAN_DELAY": "10m"})
    assert later.delay_seconds == 600
    for value in ("90s", "1m", "soon"):
        with pytest.raises(ConfigError, match="PLAN_DELAY"):
            planner_settings({"GOOGLE_CLOUD_PROJECT": "p", "PLAN_DELAY": value})


def test_a_plan_task_carries_25_sources_by_default_on_the_plans_topic():
    settings = planner_settings({"GOOGLE_CLOUD_PROJECT": "p"})
    assert (settings.plan_slice, settings.plan_topic) == (25, "duo-telephony-plans")
    settings = planner_settings(
        {"GOOGLE_CLOUD_PROJECT": "p", "PLAN_SLICE": "100", "PLAN_TOPIC": "acme-plans"}
    )
    assert (settings.plan_slice, settings.plan_topic) == (100, "acme-plans")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PLAN_SLICE", "0"),
        ("PLAN_SLICE", "101"),
        ("PLAN_SLICE", "2.5"),
        ("PLAN_SLICE", "many"),
        ("PLAN_PARALLELISM", "four"),
        ("PLAN_PARALLELISM", "0"),
        ("PLAN_PARALLELISM", "65"),
        ("PLAN_PARALLELISM", "nan"),
        ("PLAN_DELAY", "1m"),
        ("REPAIR_CHECK_BATCH", "59s"),
        ("REPAIR_CHECK_BATCH", "361m"),
        ("REPAIR_CHECK_BATCH", "half an hour"),
        ("QUIET_READ_EVERY", "90s"),
        ("QUIET_READ_EVERY", "0m"),
        ("QUIET_READ_EVERY", "2h"),
        ("QUIET_READ_EVERY", "often"),
    ],
)
def test_bad_planner_numbers_are_named(variable, value):
    with pytest.raises(ConfigError, match=variable):
        planner_settings({"GOOGLE_CLOUD_PROJECT": "p", variable: value})


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DUO_RATE_LIMIT_PER_MINUTE", "fast"),
        ("DUO_RATE_LIMIT_PER_MINUTE", "0"),
        ("DUO_RATE_LIMIT_PER_MINUTE", "6001"),
        ("DUO_RATE_LIMIT_PER_MINUTE", "inf"),
        ("DUO_RATE_BURST", "0"),
        ("DUO_RATE_BURST", "101"),
        ("ENRICH_RECORDS", "maybe"),
        ("ENRICH_RECORDS", "on"),
        ("FETCH_TIME_BUDGET", "4 minutes"),
        ("WINDOW_LEASE", "ten minutes"),
    ],
)
def test_bad_fetcher_numbers_and_flags_are_named(variable, value):
    assert variable in fetcher_error(fetcher_env(**{variable: value}))


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, False), ("true", True), ("TRUE", True), ("1", True), ("yes", True), ("no", False)],
)
def test_flags(value, expected):
    settings = fetcher_settings(fetcher_env(ENRICH_RECORDS=value), Reader())
    assert settings.enrich is expected


def test_fetcher_defaults_and_numbers():
    settings = fetcher_settings(
        fetcher_env(DUO_RATE_LIMIT_PER_MINUTE="120", DUO_RATE_BURST="5"), Reader()
    )
    assert settings.project == "acme-prod"
    assert settings.rate_per_minute == 120
    assert settings.burst == 5
    assert settings.time_budget_seconds == 240
    assert settings.lease_seconds == 60
    assert settings.window_topic == "duo-telephony-windows"
    assert settings.batch_topic == "duo-telephony-batches"


@pytest.mark.parametrize("lease", ["9s", "11m"])
def test_a_window_lease_too_short_to_renew_or_too_long_to_recover_is_refused(lease):
    # Renewed every third of it while a fetch runs; a dead fetcher's window waits it out.
    assert "WINDOW_LEASE" in fetcher_error(fetcher_env(WINDOW_LEASE=lease))


def test_a_fetch_budget_that_would_outlast_pubsubs_ack_deadline_is_refused():
    # Up to 5 minutes of a page's retries come on top of the budget; Pub/Sub waits 10.
    assert "FETCH_TIME_BUDGET" in fetcher_error(fetcher_env(FETCH_TIME_BUDGET="6m"))


def test_the_lease_no_longer_depends_on_the_fetch_budget():
    settings = fetcher_settings(fetcher_env(FETCH_TIME_BUDGET="5m", WINDOW_LEASE="30s"), Reader())
    assert (settings.time_budget_seconds, settings.lease_seconds) == (300, 30)


# --- Cloud Storage prefix ---------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["duo telephony", "a//b", "/", "logs?x", "duo\\telephony", "é"])
def test_bad_gcs_prefix_is_named(prefix):
    with pytest.raises(ConfigError, match="GCS_PREFIX"):
        writer_settings({"GOOGLE_CLOUD_PROJECT": "p", "GCS_BUCKET": "b", "GCS_PREFIX": prefix})


def test_gcs_prefix_loses_its_outer_slashes():
    settings = writer_settings(
        {
            "GOOGLE_CLOUD_PROJECT": "p",
            "GCS_BUCKET": "b",
            "GCS_PREFIX": "/duo/telephony/",
            "GCS_GZIP": "true",
        }
    )
    assert (settings.bucket, settings.prefix, settings.gzip) == ("b", "duo/telephony", True)
    default = writer_settings({"GOOGLE_CLOUD_PROJECT": "p", "GCS_BUCKET": "b"})
    assert (default.prefix, default.gzip) == ("duo-telephony", False)


def test_bad_gcs_gzip_flag_is_named():
    with pytest.raises(ConfigError, match="GCS_GZIP"):
        writer_settings({"GOOGLE_CLOUD_PROJECT": "p", "GCS_BUCKET": "b", "GCS_GZIP": "gzip"})


# --- signature version and digest --------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "digest", "variable"),
    [
        ("3", None, "DUO_SIGNATURE_VERSION"),
        ("v5", None, "DUO_SIGNATURE_VERSION"),
        ("5", "sha1", "DUO_SIGNATURE_DIGEST"),
        ("2", "md5", "DUO_SIGNATURE_DIGEST"),
        ("2", "sha256", "DUO_SIGNATURE_DIGEST"),
    ],
)
def test_bad_signature_settings_are_named(version, digest, variable):
    env = fetcher_env(DUO_SIGNATURE_VERSION=version, DUO_SIGNATURE_DIGEST=digest)
    assert variable in fetcher_error(env)


@pytest.mark.parametrize(
    ("version", "digest", "expected"),
    [("2", "sha1", (2, "sha1")), ("2", None, (2, "sha512")), ("5", "sha512", (5, "sha512"))],
)
def test_good_signature_settings(version, digest, expected):
    env = fetcher_env(DUO_SIGNATURE_VERSION=version, DUO_SIGNATURE_DIGEST=digest)
    source = fetcher_settings(env, Reader()).sources["default"]
    assert (source.signature_version, source.digest) == expected


# --- several Duo accounts ---------------------------------------------------------------------

EU = {
    "id": "eu-prod",
    "api_host": "api-eu000001.duosecurity.com",
    "ikey": "DIEUEUEUEUEUEUEUEUEU",
    "skey_secret": "projects/acme-prod/secrets/duo-eu/versions/latest",
}
US = {
    "id": "us-prod",
    "api_host": "api-us000002.duosecurity.com",
    "ikey": "DIUSUSUSUSUSUSUSUSUS",
    "skey_secret": "projects/acme-prod/secrets/duo-us/versions/2",
    "signature_version": 2,
    "digest": "sha1",
}


def sources_env(entries, **changes):
    # DUO_SOURCES takes precedence: the single-source variables are left out on purpose.
    env = {"GOOGLE_CLOUD_PROJECT": "acme-prod", "DUO_SOURCES": json.dumps(entries)}
    env.update(changes)
    return env


def test_two_sources_each_with_its_own_secret():
    reader = Reader()
    settings = fetcher_settings(sources_env([EU, US]), reader)
    assert list(settings.sources) == ["eu-prod", "us-prod"]
    eu, us = settings.sources["eu-prod"], settings.sources["us-prod"]
    assert (eu.id, eu.endpoint.host, eu.ikey) == ("eu-prod", EU["api_host"], EU["ikey"])
    assert (us.id, us.endpoint.host, us.ikey) == ("us-prod", US["api_host"], US["ikey"])
    assert (us.signature_version, us.digest) == (2, "sha1")
    assert reader.names == [EU["skey_secret"], US["skey_secret"]]
    assert SECRET not in repr(settings)


def test_a_duplicate_source_id_is_refused():
    message = fetcher_error(sources_env([EU, {**US, "id": "eu-prod"}]))
    assert "DUO_SOURCES[1]" in message
    assert "eu-prod" in message


@pytest.mark.parametrize("value", ["[{'id': 'eu'}]", "eu-prod,us-prod", "[", "{}", "[]", '"eu"'])
def test_duo_sources_that_is_not_a_json_list_is_refused(value):
    assert "DUO_SOURCES" in fetcher_error(fetcher_env(DUO_SOURCES=value))


@pytest.mark.parametrize("field", ["id", "api_host", "ikey"])
@pytest.mark.parametrize("value", [None, "", 7])
def test_a_missing_source_field_is_named_with_its_position(field, value):
    second = {key: val for key, val in US.items() if key != field}
    if value is not None:
        second[field] = value
    message = fetcher_error(sources_env([EU, second]))
    assert f"DUO_SOURCES[1].{field}" in message


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"id": "EU_Prod"}, "DUO_SOURCES[1].id"),
        ({"api_host": "http://duo.example.com"}, "DUO_SOURCES[1].api_host"),
        ({"signature_version": 4}, "DUO_SOURCES[1].signature_version"),
        ({"signature_version": 5, "digest": "sha1"}, "DUO_SOURCES[1].digest"),
        ({"skey_secret": "duo-us"}, "DUO_SOURCES[1]"),
    ],
)
def test_a_wrong_source_field_is_named_with_its_position(change, named):
    assert named in fetcher_error(sources_env([EU, {**US, **change}]))


def test_a_source_without_any_secret_is_named():
    second = {key: val for key, val in US.items() if key != "skey_secret"}
    message = fetcher_error(sources_env([EU, second]))
    assert "DUO_SOURCES[1]" in message
    assert "DUO_SKEY_SECRET" in message


def test_a_source_that_is_not_an_object_is_named():
    assert "DUO_SOURCES[1]" in fetcher_error(sources_env([EU, "us-prod"]))


def test_a_plain_source_key_is_refused_on_cloud_run_and_accepted_locally():
    plain = {key: val for key, val in US.items() if key != "skey_secret"} | {"skey": SECRET}
    message = fetcher_error(sources_env([EU, plain], K_SERVICE="duo-fetcher"))
    assert "DUO_SOURCES[1]" in message
    assert "Cloud Run" in message
    reader = Reader()
    local = fetcher_settings(sources_env([EU, plain]), reader)
    assert local.sources["us-prod"].skey.reveal() == SECRET
    assert reader.names == [EU["skey_secret"]]


# --- planner: source ids only, no secrets ------------------------------------------------------


def test_planner_source_id_from_source_id_or_default():
    assert planner_settings({"GOOGLE_CLOUD_PROJECT": "p"}).sources == ("default",)
    settings = planner_settings({"GOOGLE_CLOUD_PROJECT": "p", "SOURCE_ID": "eu-prod"})
    assert settings.sources == ("eu-prod",)
    assert settings.project == "p"
    assert settings.lookback_seconds == 86_400
    assert settings.parallelism == 1
    assert settings.window_topic == "duo-telephony-windows"


def test_planner_source_ids_from_duo_sources_in_order():
    settings = planner_settings(sources_env([US, EU]))
    assert settings.sources == ("us-prod", "eu-prod")


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"SOURCE_ID": "EU prod"}, "SOURCE_ID"),
        ({"DUO_SOURCES": "not json"}, "DUO_SOURCES"),
        ({"DUO_SOURCES": '[{"api_host": "x"}]'}, "DUO_SOURCES"),
        ({"DUO_SOURCES": '[{"id": "Bad Id"}]'}, "DUO_SOURCES"),
        ({"DUO_SOURCES": '["eu-prod"]'}, "DUO_SOURCES"),
    ],
)
def test_planner_source_errors_are_named(env, variable):
    with pytest.raises(ConfigError, match=variable):
        planner_settings({"GOOGLE_CLOUD_PROJECT": "p", **env})


def test_a_burst_above_a_minute_of_budget_is_refused():
    message = fetcher_error(fetcher_env(DUO_RATE_LIMIT_PER_MINUTE="2", DUO_RATE_BURST="3"))
    assert "DUO_RATE_BURST" in message


@pytest.mark.parametrize("value", [None, "auto", "AUTO"])
def test_by_default_the_fetchers_find_the_rate_limit_themselves(value):
    settings = fetcher_settings(fetcher_env(DUO_RATE_LIMIT_PER_MINUTE=value), Reader())
    assert (settings.rate_per_minute, settings.burst) == (None, 1)


def test_a_rate_limit_neither_auto_nor_a_number_says_both_are_allowed():
    message = fetcher_error(fetcher_env(DUO_RATE_LIMIT_PER_MINUTE="fast"))
    assert "DUO_RATE_LIMIT_PER_MINUTE" in message and "auto" in message


def test_a_burst_with_a_limit_found_by_itself_is_refused():
    message = fetcher_error(fetcher_env(DUO_RATE_BURST="5"))
    assert "DUO_RATE_BURST" in message and "auto" in message


# --- FIRESTORE_DATABASE ---------------------------------------------------------------------


def test_every_service_opens_the_database_named_and_by_default_the_projects_default():
    planner_env = {"GOOGLE_CLOUD_PROJECT": "acme-prod"}
    writer_env = planner_env | {"GCS_BUCKET": "b"}
    named = {"FIRESTORE_DATABASE": "duo-telephony"}
    assert planner_settings(planner_env | named).database == "duo-telephony"
    assert fetcher_settings(fetcher_env(**named), Reader()).database == "duo-telephony"
    assert writer_settings(writer_env | named).database == "duo-telephony"
    assert planner_settings(planner_env).database is None
    assert fetcher_settings(fetcher_env(), Reader()).database is None
    assert writer_settings(writer_env).database is None
    assert writer_settings(writer_env | {"FIRESTORE_DATABASE": "(default)"}).database == (
        "(default)"
    )


@pytest.mark.parametrize(
    "name", ["Duo-Telephony", "duo", "1duo", "duo-", "duo_telephony", "a" * 64]
)
def test_a_database_name_firestore_would_refuse_is_named_at_start(name):
    with pytest.raises(ConfigError) as caught:
        writer_settings(
            {"GOOGLE_CLOUD_PROJECT": "p", "GCS_BUCKET": "b", "FIRESTORE_DATABASE": name}
        )
    assert str(caught.value).startswith(f"FIRESTORE_DATABASE: {name!r} is not a Firestore database")
