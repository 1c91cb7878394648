/**
 * The dashboard's one stylesheet, served from /dashboard/static/app.css (the pages'
 * Content-Security-Policy allows no inline style and no script at all).
 */
export const STYLESHEET = `
:root { --fg: #1b1f24; --muted: #5b6470; --line: #d7dce2; --bg: #f6f7f9; --card: #fff;
  --accent: #0b5cad; --ok: #1a7f37; --warn: #9a6700; --bad: #c62828; --pending: #6f42c1; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
header.top { display: flex; align-items: center; gap: 24px; padding: 10px 24px; background: #14213d; color: #fff; }
header.top .brand { font-weight: 700; letter-spacing: .02em; }
header.top nav a { color: #cfd8e3; text-decoration: none; margin-right: 16px; }
header.top nav a.current { color: #fff; border-bottom: 2px solid #fca311; }
header.top .who { margin-left: auto; display: flex; gap: 12px; align-items: center; color: #cfd8e3; }
header.top .who form { margin: 0; }
main { padding: 20px 24px 48px; max-width: 1280px; }
h1 { font-size: 22px; margin: 0 0 12px; }
h2 { font-size: 16px; margin: 24px 0 8px; }
a { color: var(--accent); }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 14px 16px; margin-bottom: 16px; }
.card > h2:first-child { margin-top: 0; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin-bottom: 16px; }
.cards .count { background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 10px 16px; min-width: 150px; }
.count .n { font-size: 26px; font-weight: 700; display: block; }
.count .label { color: var(--muted); }
table { border-collapse: collapse; width: 100%; background: var(--card); }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-weight: 600; color: var(--muted); background: #eef1f4; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; border: 1px solid currentColor; }
.badge.active, .badge.valid, .badge.good, .badge.success, .badge.unused, .badge.issued, .badge.approved { color: var(--ok); }
.badge.pending, .badge.queued, .badge.sent { color: var(--pending); }
.badge.revoked, .badge.denied, .badge.critical, .badge.high, .badge.rejected, .badge.failed, .badge.error { color: var(--bad); }
.badge.expired, .badge.decommissioned, .badge.used, .badge.medium, .badge.low { color: var(--warn); }
.notice { border-left: 4px solid var(--ok); background: #e9f6ec; padding: 10px 14px; margin-bottom: 16px; }
.notice.error { border-color: var(--bad); background: #fdecea; }
.notice.warn { border-color: var(--warn); background: #fff6dd; }
form.inline { display: inline; }
form.filters { display: flex; flex-wrap: wrap; gap: 10px; align-items: end; margin-bottom: 12px; }
label { display: block; font-weight: 600; margin-bottom: 2px; }
label.check { font-weight: normal; display: inline-flex; gap: 6px; align-items: center; }
.field { margin-bottom: 10px; }
input[type=text], input[type=password], input[type=number], select, textarea { font: inherit; padding: 5px 8px; border: 1px solid #aab3bd; border-radius: 4px; background: #fff; }
textarea { width: 100%; min-height: 80px; }
button { font: inherit; padding: 5px 14px; border-radius: 4px; border: 1px solid #0a4a8c; background: var(--accent); color: #fff; cursor: pointer; }
button.secondary { background: #fff; color: var(--accent); }
button.danger { background: var(--bad); border-color: #8e1b1b; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 18px; margin: 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; }
.grid2 { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
@media (max-width: 900px) { .grid2 { grid-template-columns: 1fr; } }
.muted { color: var(--muted); }
.pager { margin-top: 10px; display: flex; gap: 16px; }
.secret { font-family: ui-monospace, monospace; background: #fff6dd; padding: 2px 6px; word-break: break-all; }
svg.chart { width: 100%; height: auto; background: var(--card); border: 1px solid var(--line); border-radius: 6px; }
svg.chart .bar { fill: var(--accent); }
svg.chart .bar.soon { fill: var(--bad); }
svg.chart .axis { stroke: #8a939e; stroke-width: 1; }
svg.chart .grid { stroke: #e3e7eb; stroke-width: 1; }
svg.chart text { fill: var(--muted); font-size: 11px; font-family: system-ui, sans-serif; }
.login { max-width: 420px; margin: 80px auto; }
`;
