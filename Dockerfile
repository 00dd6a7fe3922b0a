# One image for the three Cloud Run services. SERVICE (planner | fetcher | writer) picks the
# one that runs; Cloud Run sets PORT. GUNICORN_THREADS should equal the service's Cloud Run
# concurrency (cloudbuild.yaml sets both), since services/gunicorn.conf.py runs one gthread
# worker per instance.
#
# The base is python:VERSION-slim (VERSION: .python-version), and always given by the build,
# never a default: cloudbuild.yaml passes it pinned by digest (_BASE_IMAGE, which
# deploy/bootstrap.sh resolves; docs/deploy.md, "The base image"). Locally, a tag does:
#   docker build --build-arg BASE_IMAGE=python:3.11-slim .
ARG BASE_IMAGE
FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONPATH=/app \
    PORT=8080 \
    GUNICORN_THREADS=8

WORKDIR /app

# The runtime dependencies first, pinned with hashes: a change to the code alone reuses this
# layer instead of reinstalling them.
COPY requirements.lock .
RUN pip install --no-cache-dir --require-hashes --no-deps -r requirements.lock

# The code (.dockerignore keeps out the local harness, the simulator, tests, bench and docs),
# run from /app by gunicorn; compiled now because the user owns nothing in /app. The user
# gets a home: gunicorn 25.1+ puts its control socket there.
COPY . .
RUN python -m compileall -q /app \
    && useradd --system --uid 10001 --user-group --create-home --home-dir /home/app \
        --shell /usr/sbin/nologin app

USER 10001:10001
ENV HOME=/home/app

EXPOSE 8080

CMD ["sh", "-c", "case \"$SERVICE\" in planner|fetcher|writer) ;; *) echo \"SERVICE must be planner, fetcher or writer, not '$SERVICE'\" >&2; exit 64 ;; esac; exec gunicorn --config services/gunicorn.conf.py --bind \":$PORT\" \"services.$SERVICE.main:app()\""]
