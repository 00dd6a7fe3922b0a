# One image for the three Cloud Run services. SERVICE (planner | fetcher | writer) picks the
# one that runs; Cloud Run sets PORT. GUNICORN_THREADS should equal the service's Cloud Run
# concurrency (cloudbuild.yaml sets both), since services/gunicorn.conf.py runs one gthread
# worker per instance.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PORT=8080 \
    GUNICORN_THREADS=8

WORKDIR /app

# .dockerignore keeps the virtual environment, caches, tests, bench and .git out.
COPY . .

# The runtime dependencies only (no test extras); the source stays in /app for gunicorn's
# config file and the app modules, compiled now because the user owns nothing in /app (the
# code is read-only). The user gets a home: gunicorn 25.1+ puts its control socket there.
RUN pip install --no-cache-dir . \
    && rm -rf build ./*.egg-info \
    && python -m compileall -q /app \
    && useradd --system --uid 10001 --user-group --create-home --home-dir /home/app \
        --shell /usr/sbin/nologin app

USER 10001:10001
ENV HOME=/home/app

EXPOSE 8080

CMD ["sh", "-c", "case \"$SERVICE\" in planner|fetcher|writer) ;; *) echo \"SERVICE must be planner, fetcher or writer, not '$SERVICE'\" >&2; exit 64 ;; esac; exec gunicorn --config services/gunicorn.conf.py --bind \":$PORT\" \"services.$SERVICE.main:app()\""]
