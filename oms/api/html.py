"""The page's two HTML documents, as plain string templates: no template engine, no build step.

The server renders only a shell (who is signed in, the login form and its error);
``static/page.js`` fills it from the JSON API. Every value put in here goes
through :func:`html.escape`, so nothing a user typed becomes markup.
"""

from __future__ import annotations

from html import escape
from string import Template

_HEAD = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>HMS-OMS · $title</title>
<link rel="stylesheet" href="/static/page.css">
<link rel="icon" href="data:,">
</head>
"""

_LOGIN = Template(_HEAD + """<body class="login">
<main>
<h1>HMS-OMS operator board</h1>
<form method="post" action="/login" id="login-form">
<label for="token">API token</label>
<input type="password" id="token" name="token" autocomplete="current-password" required autofocus>
<button type="submit">Sign in</button>
$error
</form>
<p class="hint">Create a token with <code>oms token create --role reader</code> (or admin to cancel and retry).</p>
</main>
</body>
</html>
""")

_APP = Template(_HEAD + """<body data-role="$role" data-csrf-cookie="$csrf_cookie" data-csrf-header="$csrf_header">
<header>
<h1><a href="#/">HMS-OMS operator board</a></h1>
<p class="who">signed in as <strong>$name</strong> ($role)</p>
<form method="post" action="/logout"><input type="hidden" name="csrf" value="$csrf">
<button type="submit">Sign out</button></form>
</header>
<p id="status-line" role="status" aria-live="polite">loading…</p>
<main>
<section id="overview">
<h2>Workflows</h2>
<div id="board"></div>
<h2>Instances</h2>
<form id="filters">
<label>workflow <select name="workflow" id="f-workflow"><option value="">any</option></select></label>
<label>status <select name="status" id="f-status"><option value="">any</option>
<option>pending</option><option>running</option><option>done</option><option>failed</option><option>cancelled</option>
</select></label>
<label>light <select name="light" id="f-light"><option value="">any</option>
<option>green</option><option>yellow</option><option>red</option></select></label>
</form>
<table id="instances"><thead><tr><th>instance</th><th>workflow</th><th>status</th><th>step</th><th>light</th>
<th>started (UTC)</th><th>finished (UTC)</th></tr></thead><tbody></tbody></table>
<nav class="pager"><button type="button" id="page-newer">← newer</button>
<span id="page-number">page 1</span><button type="button" id="page-older">older →</button></nav>
</section>
<section id="instance" hidden>
<p><a href="#/">← all workflows</a></p>
<div id="instance-head"></div>
<div id="instance-actions"></div>
<p id="action-message" role="alert"></p>
<h3>Steps</h3>
<div id="timeline"></div>
<h3>Event log</h3>
<table id="events"><thead><tr><th>at (UTC)</th><th>event</th><th>step</th><th>attempt</th><th>data</th></tr></thead>
<tbody></tbody></table>
</section>
</main>
<script src="/static/page.js"></script>
</body>
</html>
""")


def login_page(error: str | None = None) -> str:
    """The token form; ``error`` (plain text) shown under it."""
    shown = f'<p class="error" id="login-error" role="alert">{escape(error)}</p>' if error else ""
    return _LOGIN.substitute(title="sign in", error=shown)


def app_page(*, name: str, role: str, csrf: str, csrf_cookie: str, csrf_header: str) -> str:
    """The board's shell for a signed-in principal; the script reads its role and CSRF names from ``<body>``."""
    values = {"name": name, "role": role, "csrf": csrf, "csrf_cookie": csrf_cookie, "csrf_header": csrf_header}
    return _APP.substitute(title="board", **{key: escape(value, quote=True) for key, value in values.items()})
