"""dynos: a self-hosted dyno platform that runs Procfile apps the way Heroku does."""

__version__ = "0.1.0"
