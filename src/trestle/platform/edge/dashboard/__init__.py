"""The platform's web dashboard (``docs/14-dashboard.md``): server-rendered pages (Jinja2) over the
platform's own API, live over server-sent events, charts from the metric history (vendored uPlot)."""
