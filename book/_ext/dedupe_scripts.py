"""Sphinx extension: drop repeated <script> entries from each page.

With Jupyter Book 1.0.4 (Sphinx 7), scripts that sphinx-togglebutton and sphinx-thebe add after the
builder starts are written twice into every page; the second ``const THEBE_JS_URL`` declaration is
a JavaScript error in the browser (tests/test_browser.py catches it). This keeps the first of each
identical script (same file, same attributes and inline body).
"""


def _key(script):
    # An inline script is stored once with filename None and once with "": the same
    # script.
    filename = getattr(script, "filename", script) or ""
    attributes = getattr(script, "attributes", {}) or {}
    return str(filename), tuple(
        sorted((k, str(v)) for k, v in attributes.items() if k != "priority")
    )


def dedupe(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for script in scripts:
        key = _key(script)
        if key not in seen:
            seen.add(key)
            kept.append(script)
    context["script_files"] = kept


def setup(app):
    app.connect("html-page-context", dedupe, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
