# Sourced by bootstrap.sh and teardown.sh: how a gcloud command is run, or only printed.
#
# DRY_RUN=true prints each changing command instead of running it and treats every check as
# "missing", so a dry run calls nothing, needs no credentials and prints the plan for an empty
# project. Checks (describe, get-iam-policy, list) are never printed: they change nothing.

DRY_RUN="${DRY_RUN:-false}"

dry() { [ "$DRY_RUN" = true ]; }

# One word as the shell would need it typed: bare when safe, single-quoted otherwise.
quote() {
  if [[ "$1" =~ ^[A-Za-z0-9_./:=@,+%-]+$ ]]; then
    printf '%s' "$1"
  else
    printf "'%s'" "${1//\'/\'\\\'\'}"
  fi
}

# Runs a changing command, or prints it on a dry run.
run() {
  if dry; then
    local word line=""
    for word in "$@"; do line+="$(quote "$word") "; done
    echo "${line% }"
  else
    "$@"
  fi
}

# Whether a check command succeeds (a describe finds the resource). Always false on a dry run.
exists() {
  ! dry && "$@" >/dev/null 2>&1
}

# iam_policy_command KIND: the gcloud command group holding a resource kind's IAM policy.
iam_policy_command() {
  case "$1" in
    project | database) echo projects ;;
    topic) echo pubsub topics ;;
    subscription) echo pubsub subscriptions ;;
    secret) echo secrets ;;
    bucket) echo storage buckets ;;
    repository) echo artifacts repositories ;;
    account) echo iam service-accounts ;;
    key) echo kms keys ;;
    *) echo "unknown resource kind $1" >&2 && return 1 ;;
  esac
}

# The flags an add- or remove-iam-policy-binding of KIND needs besides the resource.
binding_flags() {
  case "$1" in
    project) echo --condition=None ;; # the unconditional binding; no prompt about others
    # A project binding that holds only on the pipeline's database. No spaces: the words are
    # split on them.
    database) echo "--condition=expression=$(database_condition),title=duo-telephony-database" ;;
    repository) echo --location="$REGION" ;;
  esac
}

# The IAM condition expression of a "database" binding: Firestore's resource name of it.
database_condition() {
  echo "resource.name==\"projects/$PROJECT_ID/databases/$FIRESTORE_DATABASE\""
}

# Each resource's policy as ROLE<TAB>MEMBER lines (CONDITION<TAB>ROLE<TAB>MEMBER for KIND
# database, so that only a binding with the database's condition counts), read once per run and kept up to date by
# grant and revoke.
declare -A POLICIES=()

# Whether RESOURCE of KIND binds ROLE to MEMBER (unconditionally or not; for KIND database,
# with the database's condition). False on a dry run.
has_binding() { # KIND RESOURCE MEMBER ROLE
  dry && return 1
  local key="$1 $2"
  if [ -z "${POLICIES[$key]+read}" ]; then
    local -a group location=()
    local fields=bindings.role,bindings.members
    read -ra group <<<"$(iam_policy_command "$1")"
    [ "$1" = repository ] && location=(--location="$REGION")
    [ "$1" = database ] && fields="bindings.condition.expression,$fields"
    POLICIES[$key]="$(gcloud "${group[@]}" get-iam-policy "$2" "${location[@]}" \
      --project="$PROJECT_ID" --flatten='bindings[].members' \
      --format="value($fields)")" || {
      unset "POLICIES[$key]" # not read: look again next time
      return 1
    }
  fi
  grep -qxF "$(binding_line "$@")" <<<"${POLICIES[$key]}"
}

# How has_binding's policy lines show ROLE bound to MEMBER on a resource of KIND.
binding_line() { # KIND RESOURCE MEMBER ROLE
  if [ "$1" = database ]; then
    printf '%s\t%s\t%s' "$(database_condition)" "$4" "$3"
  else
    printf '%s\t%s' "$4" "$3"
  fi
}

# IAM is eventually consistent: a service account created a moment ago can be refused in a
# policy ("... does not exist") for up to a few minutes. Google's IAM API reference says to
# retry with truncated exponential backoff; this waits 2, 4, ... 64 s (about two minutes in
# all) and retries only that kind of error, so a real refusal fails at once.
IAM_ATTEMPTS=7

retry_iam() {
  if dry; then
    run "$@"
    return
  fi
  local attempt delay=2 error
  for ((attempt = 1; ; attempt++)); do
    error="$("$@" 2>&1 >/dev/null)" && return 0
    case "$error" in
      *"does not exist"* | *NOT_FOUND* | *"not found"*) ;;
      *)
        printf '%s\n' "$error" >&2
        return 1
        ;;
    esac
    if ((attempt == IAM_ATTEMPTS)); then
      printf '%s\n' "$error" >&2
      return 1
    fi
    echo "IAM has not seen the change yet; retrying in ${delay}s" >&2
    sleep "$delay"
    delay=$((delay * 2))
  done
}

# Binds ROLE to MEMBER on one resource, unless it already is: a re-run changes nothing.
grant() { # KIND RESOURCE MEMBER ROLE
  has_binding "$@" && return 0
  local -a group extra
  read -ra group <<<"$(iam_policy_command "$1")"
  read -ra extra <<<"$(binding_flags "$1")"
  retry_iam gcloud "${group[@]}" add-iam-policy-binding "$2" "${extra[@]}" \
    --member="$3" --role="$4" --project="$PROJECT_ID"
  dry && return 0
  POLICIES["$1 $2"]+=$'\n'"$(binding_line "$@")"
  echo "granted $4 to $3 on $1 $2"
}

# Removes ROLE from MEMBER on one resource, if it is bound there.
revoke() { # KIND RESOURCE MEMBER ROLE
  dry || has_binding "$@" || return 0
  local -a group extra
  read -ra group <<<"$(iam_policy_command "$1")"
  read -ra extra <<<"$(binding_flags "$1")"
  local -a command=(gcloud "${group[@]}" remove-iam-policy-binding "$2" "${extra[@]}"
    --member="$3" --role="$4" --project="$PROJECT_ID")
  if dry; then
    run "${command[@]}"
    return 0
  fi
  "${command[@]}" >/dev/null
  POLICIES["$1 $2"]="$(grep -vxF "$(binding_line "$@")" <<<"${POLICIES["$1 $2"]}" || true)"
  echo "removed $4 from $3 on $1 $2"
}
