import pytest

from shared.duo.endpoint import DuoEndpoint, EndpointError


@pytest.mark.parametrize(
    ("value", "base_url", "signed_host"),
    [
        (
            "api-1234abcd.duosecurity.com",
            "https://api-1234abcd.duosecurity.com",
            "api-1234abcd.duosecurity.com",
        ),
        (
            "API-1234ABCD.duosecurity.com:8443",
            "https://api-1234abcd.duosecurity.com:8443",
            "api-1234abcd.duosecurity.com",
        ),
        (
            "https://api-1234abcd.duosecurity.com/",
            "https://api-1234abcd.duosecurity.com",
            "api-1234abcd.duosecurity.com",
        ),
        ("http://127.0.0.1:18443", "http://127.0.0.1:18443", "127.0.0.1"),
        ("http://localhost:18443", "http://localhost:18443", "localhost"),
        ("http://[::1]:18443", "http://[::1]:18443", "::1"),
    ],
)
def test_accepted_hosts(value, base_url, signed_host):
    endpoint = DuoEndpoint.parse(value)
    assert endpoint.base_url == base_url
    assert endpoint.host == signed_host


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("http://api-1234abcd.duosecurity.com", "loopback"),
        ("http://10.0.0.5:8080", "loopback"),
        ("ftp://api-1234abcd.duosecurity.com", "scheme"),
        ("api-1234abcd.duosecurity.com/admin", "host[:port]"),
        ("user@api-1234abcd.duosecurity.com", "host[:port]"),
        ("api-1234abcd.duosecurity.com:99999", "out of range"),
        ("", "host[:port]"),
    ],
)
def test_refused_hosts_name_the_setting(value, complaint):
    with pytest.raises(EndpointError) as error:
        DuoEndpoint.parse(value)
    assert complaint in str(error.value)
    assert "DUO_API_HOST" in str(error.value)
