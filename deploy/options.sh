# Sourced by bootstrap.sh and teardown.sh: the options they share, which each one's option loop
# hands on after its own. Needs the sourcing script's usage function.

# shared_option ARG: --dry-run sets DRY_RUN (plan.sh); --help prints the usage; anything else
# is refused with the usage.
shared_option() {
  case "$1" in
    --dry-run) DRY_RUN=true ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      usage >&2
      exit 2
      ;;
  esac
}

# A fleet's files, by default those the build reads: the bootstrap makes and grants, and the
# teardown removes, the secrets they name (names.sh, fleet_secret_names). Needs $here.
SOURCES_FILE="$here/sources.json"
MSP_PARENT_FILE="$here/msp-parent.json"
# Options that take a path: OPTION -> the variable it sets.
declare -A FILE_OPTIONS=([--sources-file]=SOURCES_FILE [--msp-parent]=MSP_PARENT_FILE)

# take_value ARGS...: the value of the option in the first argument, given as --opt=VALUE or
# as the next argument, in VALUE, and in TAKEN the number of arguments it used (1 or 2).
take_value() {
  if [ "${1%%=*}" = "$1" ]; then
    VALUE="${2:-}"
    TAKEN=2
  else
    VALUE="${1#*=}"
    TAKEN=1
  fi
}

# file_option OPTION PATH: sets OPTION's variable (FILE_OPTIONS) to PATH, or exits 2 when it
# is not a file.
file_option() {
  if ! [ -f "$2" ]; then
    echo "$1: no file '$2'" >&2
    exit 2
  fi
  printf -v "${FILE_OPTIONS[$1]}" '%s' "$2"
}
