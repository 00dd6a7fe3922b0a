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
