"""The page's HTML documents (sign-in, the operators' board, a person's My work), as plain string templates: no
template engine, no build step.

The server renders only a shell (who is signed in, the login form and its error);
the scripts fill it from the JSON API: ``static/page.js`` the operators' board (``static/report.js`` its SLA
report, charts drawn by the vendored uPlot),
``static/work.js`` and ``static/form.js`` a person's My work (``static/common.js``
is what they share). Every value put in here goes
through :func:`html.escape`, so nothing a user typed becomes markup.
"""

from __future__ import annotations

from html import escape
from string import Template

from .auth import PEOPLE  # the roles that see My work rather than the operators' board

#: The roles the board links to the SLA report (``GET /v1/sla/report`` is open to every reading role).
REPORTERS = ("admin", "reader")

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
<p class="hint">Create a token with <code>oms token create --role reader</code> (or admin to cancel and retry); a
person signs in with her own, from <code>oms user create</code>.</p>
</main>
</body>
</html>
""")

#: The top of a signed-in page: who, sign out (a form carrying the CSRF value), the status line.
_TOP = """<body data-role="$role" data-name="$name" data-csrf-cookie="$csrf_cookie" data-csrf-header="$csrf_header">
<header>
<h1><a href="#/">$heading</a></h1>
<p class="who">signed in as <strong>$name</strong> ($role)</p>
<form method="post" action="/logout"><input type="hidden" name="csrf" value="$csrf">
<button type="submit">Sign out</button></form>
</header>
<p id="status-line" role="status" aria-live="polite">loading…</p>
"""

#: The board's head: the report's charts' style too.
_HEAD_BOARD = _HEAD.replace('<link rel="icon"', '<link rel="stylesheet" href="/static/vendor/uPlot.min.css">\n'
                            '<link rel="icon"')

_APP = Template(_HEAD_BOARD + _TOP.replace("$heading", "HMS-OMS operator board") + """<main>
<section id="overview">
<h2>Workflows</h2>
$report_link
<div id="board"></div>
<h2>Instances</h2>
<form id="filters">
<label>workflow <select name="workflow" id="f-workflow"><option value="">any</option></select></label>
<label>status <select name="status" id="f-status"><option value="">any</option>
<option>pending</option><option>running</option><option>done</option><option>failed</option><option>cancelled</option>
</select></label>
<label>light <select name="light" id="f-light"><option value="">any</option>
<option>green</option><option>yellow</option><option>red</option></select></label>
<label>business key <input type="search" name="business_key" id="f-business_key" maxlength="200"
placeholder="form number, exact"></label>
<label>escalations <select name="escalations" id="f-escalations"><option value="false" selected>hidden</option>
<option value="">shown</option></select></label>
</form>
<table id="instances"><thead><tr><th>instance</th><th>workflow</th><th>business key</th><th>status</th><th>step</th>
<th>light</th>
<th>started (UTC)</th><th>finished (UTC)</th></tr></thead><tbody></tbody></table>
<nav class="pager"><button type="button" id="page-newer">← newer</button>
<span id="page-number">page 1</span><button type="button" id="page-older">older →</button></nav>
<div id="notices" hidden>
<h2>Notices</h2>
<p class="hint">What escalations sent to people and channels, newest first: when, to whom, and what failed.</p>
<label><input type="checkbox" id="f-notices-failed"> failed only</label>
<table id="notices-table"><thead><tr><th>written (UTC)</th><th>to</th><th>instance</th><th>step</th><th>light</th>
<th>status</th><th>attempts</th><th>sent, or next try (UTC)</th><th>last error</th></tr></thead><tbody></tbody></table>
</div>
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
<section id="report" hidden>
<p><a href="#/">← all workflows</a></p>
<h2>SLA report</h2>
<form id="report-form">
<label>since <input type="date" id="r-since" name="since" required></label>
<label>until (excluded) <input type="date" id="r-until" name="until" required></label>
<label>workflow <select name="workflow" id="r-workflow"><option value="">every one</option></select></label>
<button type="submit">Show</button>
</form>
<p id="report-summary"></p>
<p id="report-message" role="alert"></p>
<div class="charts">
<figure><figcaption>Share of steps within their SLA, per week</figcaption><div id="chart-share" class="chart"></div>
</figure>
<figure><figcaption>p90 of the total time against the SLA line (100% = the SLA), per week</figcaption>
<div id="chart-p90" class="chart"></div></figure>
<figure><figcaption>Breaches by hour of the working day (each calendar's local time)</figcaption>
<div id="chart-hours" class="chart"></div></figure>
</div>
<h3>Per step</h3>
<table id="report-table"><thead><tr><th>workflow</th><th>step</th><th>calendar</th><th>SLA</th><th>finished</th>
<th>within SLA</th><th>late</th><th>breaches</th><th>queue wait p50 / p90 / p99</th><th>run p50 / p90 / p99</th>
<th>total p50 / p90 / p99</th><th>time over (sum)</th></tr></thead><tbody></tbody></table>
<h3>The worst instances</h3>
<table id="report-worst"><thead><tr><th>workflow</th><th>step</th><th>instance</th><th>business key</th>
<th>finished (UTC)</th><th>over the SLA</th><th>total</th></tr></thead><tbody></tbody></table>
</section>
</main>
<script src="/static/common.js"></script>
<script src="/static/vendor/uPlot.iife.min.js"></script>
<script src="/static/report.js"></script>
<script src="/static/page.js"></script>
</body>
</html>
""")

#: A person's page (role ``person`` or ``supervisor``): her inbox, and the step she opened with its form.
_WORK = Template(_HEAD + _TOP.replace("$heading", "HMS-OMS · My work") + """<main>
<section id="work">
<h2>My work</h2>
<p id="work-message" role="alert"></p>
<p class="hint">The steps queued for you and your groups, most urgent first. Claim one to work on it: it is yours
until you complete or release it.</p>
<ol id="inbox"></ol>
</section>
<section id="task" hidden>
<p><a href="#/">← My work</a></p>
<div id="task-head"></div>
<div id="task-actions"></div>
<form id="task-reassign" hidden></form>
<p id="task-message" role="alert"></p>
<div class="task-body">
<form id="task-form" novalidate></form>
<aside id="task-context">
<h3>Payload</h3>
<div id="task-payload"></div>
<h3>Earlier results</h3>
<div id="task-results"></div>
</aside>
</div>
</section>
</main>
<script src="/static/common.js"></script>
<script src="/static/form.js"></script>
<script src="/static/work.js"></script>
</body>
</html>
""")


def login_page(error: str | None = None) -> str:
    """The token form; ``error`` (plain text) shown under it."""
    shown = f'<p class="error" id="login-error" role="alert">{escape(error)}</p>' if error else ""
    return _LOGIN.substitute(title="sign in", error=shown)


def app_page(*, name: str, role: str, csrf: str, csrf_cookie: str, csrf_header: str) -> str:
    """The shell for a signed-in principal, by role: a person's My work, else the operators' board; the scripts
    read its role, name and CSRF names from ``<body>``."""
    values = {"name": name, "role": role, "csrf": csrf, "csrf_cookie": csrf_cookie, "csrf_header": csrf_header}
    escaped = {key: escape(value, quote=True) for key, value in values.items()}
    if role in PEOPLE:
        return _WORK.substitute(title="my work", **escaped)
    report = '<p><a id="report-link" href="#/report">SLA report</a></p>' if role in REPORTERS else ""
    return _APP.substitute(title="board", report_link=report, **escaped)
