# Gunicorn configuration, as Heroku's Python getting-started app writes it: the buildpack sets
# WEB_CONCURRENCY by dyno size, and gunicorn reads it for its worker count by itself.
import os

bind = ["[::]:" + os.environ.get("PORT", "5006")]
# Heroku's router already buffers and times out requests; gunicorn's own timeout is a backstop.
timeout = 20
# Let the router (not gunicorn) decide when a reused connection is idle.
keepalive = 100
# Log to stdout, where the platform collects a dyno's output.
accesslog = "-"
access_log_format = "%(r)s %(s)s %(b)s"
