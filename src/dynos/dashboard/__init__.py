"""The web dashboard (issue 16, part 4): sign in with the API token, then see and change an
app's formation, dynos, log, releases, config vars, add-ons and metrics in a browser.
``app.py`` serves it; ``guard.py`` holds its sessions and request checks; ``views.py``
reads the platform for it; ``templates/`` and ``static/`` are its pages and scripts
(``static/vendor/``: uPlot, fetched from the npm registry when the package is built)."""
