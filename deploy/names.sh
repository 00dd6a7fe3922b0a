# Sourced by bootstrap.sh and teardown.sh: their settings and the names of what the bootstrap
# and the build create. The fixed names are cloudbuild.yaml's substitution defaults
# (tests/unit/deploy checks that the two agree); a build given other names needs other ones here.

# Settings, from the environment (docs/deploy.md, section 1). PROJECT_ID has no default; on a
# dry run without it the plan says PROJECT_ID.
REGION="${REGION:-us-central1}"
FIRESTORE_LOCATION="${FIRESTORE_LOCATION:-$REGION}"
# The pipeline's own Firestore database: its TTL policies, its grants and a teardown's
# deletes stay in it, away from the project's (default) database and anything else there.
FIRESTORE_DATABASE="${FIRESTORE_DATABASE:-duo-telephony}"
SCHEDULER_REGION="${SCHEDULER_REGION:-$REGION}"
SECRET="${SECRET:-duo-skey}"

# settle_project DRY_RUN: PROJECT_ID (a placeholder on a dry run) and the names made from it.
settle_project() {
  if [ -z "${PROJECT_ID:-}" ]; then
    if [ "$1" != true ]; then
      echo "PROJECT_ID is not set: export PROJECT_ID=your-project (see --help)" >&2
      exit 2
    fi
    PROJECT_ID=PROJECT_ID
  fi
  BUCKET="${BUCKET:-$PROJECT_ID-duo-telephony}"
  # Cloud Build's source staging bucket (gcloud builds submit --gcs-source-staging-dir).
  STAGING_BUCKET="$PROJECT_ID-duo-telephony-build"
  LOG_METRICS_ROLE="projects/$PROJECT_ID/roles/$LOG_METRICS_ROLE_ID"
}

REPOSITORY=duo-telephony
# A remote repository in front of Docker Hub, through which the image's base is resolved to
# the digest the build is pinned to, and pulled (docs/deploy.md, "The base image").
BASE_REPOSITORY=dockerhub
SERVICES=(duo-telephony-planner duo-telephony-fetcher duo-telephony-writer)
SCHEDULER_JOB=duo-telephony-planner
WINDOW_TOPIC=duo-telephony-windows
BATCH_TOPIC=duo-telephony-batches
DEAD_LETTER_TOPIC=duo-telephony-dead-letters
# The planner's own: the scheduler's run hands slices of sources to the planners through it.
PLAN_TOPIC=duo-telephony-plans
TOPICS=("$WINDOW_TOPIC" "$BATCH_TOPIC" "$DEAD_LETTER_TOPIC" "$PLAN_TOPIC")
# SUBSCRIPTION:TOPIC, the build's names: TOPIC-fetcher, TOPIC-writer, TOPIC-planner, and the
# dead-letter topic's own pull subscription.
SUBSCRIPTIONS=(
  "$WINDOW_TOPIC-fetcher:$WINDOW_TOPIC"
  "$BATCH_TOPIC-writer:$BATCH_TOPIC"
  "$DEAD_LETTER_TOPIC:$DEAD_LETTER_TOPIC"
  "$PLAN_TOPIC-planner:$PLAN_TOPIC"
)
ACCOUNTS=(planner fetcher writer push scheduler deployer)

# fleet_secret_names: ORIGIN<TAB>NAME lines, the secrets the sources file and the MSP parent
# name (deploy/fleet_secrets.py; ORIGIN file or parent), each in PROJECT_ID, where the bootstrap
# makes them and the teardown removes them. A bad file, or a secret in another project, exits
# 2 with a one-line error. Needs $here, the files (options.sh) and dry (plan.sh).
fleet_secret_names() {
  local fleet origin source version name secret_project
  fleet="$(python3 "$here/fleet_secrets.py" "$SOURCES_FILE" "$MSP_PARENT_FILE")" || exit 2
  while IFS=$'\t' read -r origin source version; do
    [ -n "$version" ] || continue
    secret_project="${version#projects/}" && secret_project="${secret_project%%/*}"
    if ! dry && [ "$secret_project" != "$PROJECT_ID" ]; then
      echo "$source's skey_secret $version is not in $PROJECT_ID: the bootstrap and the teardown manage secrets in this project only" >&2
      exit 2
    fi
    name="${version#*/secrets/}" && name="${name%%/*}"
    printf '%s\t%s\n' "$origin" "$name"
  done <<<"$fleet"
}

# The e-mail of one of ACCOUNTS.
sa() { echo "duo-telephony-$1@$PROJECT_ID.iam.gserviceaccount.com"; }

# Firestore roles are granted on the project with an IAM condition naming the pipeline's
# database (plan.sh, kind "database"): Firestore has no per-collection IAM.
RUNTIME_DATABASE_ROLES=(roles/datastore.user)
# The build's account: deploy the services and bind run.invoker on them (run.admin), the
# planner's job (cloudscheduler.admin), its own log (logging.logWriter: the build logs to Cloud
# Logging only), and the monitoring it applies: log-based metrics (the custom role below),
# alert policies and the dashboard (the two Monitoring editor roles narrowed to those
# objects), and reading the notification channels they name (notificationChannelViewer). Its
# Pub/Sub rights are on the topics and subscriptions themselves, not on the project; its
# Firestore right (the TTL policies) on the pipeline's database only.
DEPLOYER_PROJECT_ROLES=(
  roles/run.admin
  roles/cloudscheduler.admin
  roles/logging.logWriter
  roles/monitoring.alertPolicyEditor
  roles/monitoring.dashboardEditor
  roles/monitoring.notificationChannelViewer
)
DEPLOYER_DATABASE_ROLES=(roles/datastore.indexAdmin)
# Log-based metrics only, instead of logging.configWriter (which also changes sinks, buckets
# and exclusions): what deploy/monitoring/apply.sh calls (describe, create, update).
LOG_METRICS_ROLE_ID=duoTelephonyLogMetrics
LOG_METRICS_PERMISSIONS=logging.logMetrics.create,logging.logMetrics.get,logging.logMetrics.update
# What the writer needs on the bucket: objectCreator for its create-only uploads, and
# legacyObjectReader (storage.objects.get only) to read an existing object's metadata when a
# batch is delivered again (shared/gcp/bucket_writer.py: upload_from_string with
# if_generation_match=0, then blob.reload()). It never lists, so no objectViewer.
WRITER_BUCKET_ROLES=(roles/storage.objectCreator roles/storage.legacyObjectReader)
# What the planner needs on the bucket: before reading again a batch that never got its
# marker, it lists the objects of the batch's time span and reads the batch's own back
# (shared/gcp/unmarked_batches.py), so that a batch the writer did land is not landed twice.
PLANNER_BUCKET_ROLES=(roles/storage.objectViewer)

# Every Firestore collection the pipeline writes (shared/gcp: window_store.ROOT and its
# windows/batches subcollections, rate_limiter.DEFAULT_COLLECTION).
FIRESTORE_COLLECTIONS=telephony_sources,windows,batches,duo-telephony-rate-limits
