#!/usr/bin/env bash
# Creates or updates duo-telephony's log-based metrics, alert policies and dashboard in the
# current gcloud project. Run by cloudbuild.yaml's `monitoring` step; runs by hand too, with
# the build's substitutions as environment variables:
#
#   _SERVICE_PREFIX=duo-telephony _WINDOW_TOPIC=duo-telephony-windows \
#   _BATCH_TOPIC=duo-telephony-batches _PLAN_TOPIC=duo-telephony-plans _LAG_ALERT_SECONDS=3600 \
#   _NOTIFICATION_CHANNEL=projects/P/notificationChannels/ID bash deploy/monitoring/apply.sh
#
# Re-running changes what differs and creates nothing twice: a metric is found by its name,
# a policy and the dashboard by their display name (the names deploy/teardown.sh removes:
# metrics duo_telephony_*, policies "duo-telephony...", dashboard "duo-telephony").
# _NOTIFICATION_CHANNEL: channel ids or projects/P/notificationChannels/ID names, comma
# separated; "none" leaves the policies notifying nobody (they still open incidents), and
# nothing at all is refused, so that no one deploys silent alerts by forgetting it.
set -euo pipefail

: "${_SERVICE_PREFIX:?}" "${_WINDOW_TOPIC:?}" "${_BATCH_TOPIC:?}" "${_PLAN_TOPIC:?}" "${_LAG_ALERT_SECONDS:?}"
: "${_NOTIFICATION_CHANNEL:?the channels the alerts notify (comma separated), or none}"
channels="$_NOTIFICATION_CHANNEL"
if [ "$channels" = none ]; then channels=""; fi
case "$_LAG_ALERT_SECONDS" in
  '' | *[!0-9]*) echo "_LAG_ALERT_SECONDS must be a number of seconds, not '$_LAG_ALERT_SECONDS'" >&2; exit 2 ;;
esac

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
rendered="$(mktemp -d)"
trap 'rm -rf "$rendered"' EXIT

render() { # TEMPLATE: a copy with the placeholders filled in; prints the copy's path
  local text out
  out="$rendered/$(basename "$1")"
  text="$(<"$1")"
  text=${text//'${SERVICE_PREFIX}'/"$_SERVICE_PREFIX"}
  text=${text//'${LAG_ALERT_SECONDS}'/"$_LAG_ALERT_SECONDS"}
  # The push subscriptions, named as the build's pubsub step names them.
  text=${text//'${WINDOW_SUBSCRIPTION}'/"$_WINDOW_TOPIC-fetcher"}
  text=${text//'${BATCH_SUBSCRIPTION}'/"$_BATCH_TOPIC-writer"}
  text=${text//'${PLAN_SUBSCRIPTION}'/"$_PLAN_TOPIC-planner"}
  printf '%s\n' "$text" >"$out"
  echo "$out"
}

display_name() { # JSON_FILE: its top-level displayName (the only one indented by two spaces)
  sed -n 's/^  "displayName": "\(.*\)",$/\1/p' "$1"
}

existing() { # DISPLAY_NAME, then "DISPLAY<TAB>NAME" lines on stdin: the first NAME that matches
  local display name
  while IFS=$'\t' read -r display name; do
    if [ "$display" = "$1" ]; then
      echo "$name"
      return
    fi
  done
}

for template in "$here"/metrics/*.json; do
  metric="$(basename "$template" .json)"
  config="$(render "$template")"
  if gcloud logging metrics describe "$metric" >/dev/null 2>&1; then
    gcloud logging metrics update "$metric" --config-from-file="$config"
  else
    gcloud logging metrics create "$metric" --config-from-file="$config"
  fi
done

# Alert policies are in gcloud's alpha track only (gcloud 528: `gcloud monitoring policies`
# does not exist); the file replaces the whole policy on update, channels included.
policies="$(gcloud alpha monitoring policies list --format='value(displayName,name)')"
for template in "$here"/policies/*.json; do
  policy="$(render "$template")"
  display="$(display_name "$policy")"
  name="$(existing "$display" <<<"$policies")"
  if [ -n "$name" ]; then
    if [ -n "$channels" ]; then
      notify=(--set-notification-channels="$channels")
    else
      notify=(--clear-notification-channels)
    fi
    gcloud alpha monitoring policies update "$name" --policy-from-file="$policy" "${notify[@]}"
  else
    notify=()
    if [ -n "$channels" ]; then notify=(--notification-channels="$channels"); fi
    gcloud alpha monitoring policies create --policy-from-file="$policy" "${notify[@]}"
  fi
done

# An update must carry the dashboard's current etag (gcloud monitoring dashboards update
# --help), which is added to the rendered file.
dashboard="$(render "$here/dashboard.json")"
display="$(display_name "$dashboard")"
name="$(gcloud monitoring dashboards list --format='value(displayName,name)' | existing "$display")"
if [ -n "$name" ]; then
  etag="$(gcloud monitoring dashboards describe "$name" --format='value(etag)')"
  text="$(<"$dashboard")"
  printf '{"etag": "%s",%s\n' "$etag" "${text#\{}" >"$dashboard"
  gcloud monitoring dashboards update "$name" --config-from-file="$dashboard"
else
  gcloud monitoring dashboards create --config-from-file="$dashboard"
fi
