"""nginx with the shipped deploy/nginx.conf in front of a gunicorn, for the bench and the tests.

The shipped file is used as it is, except the first value of each line marked `# local`
(ports and paths), and included in a small main configuration like Debian's own.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "deploy" / "nginx.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
_LOCAL = re.compile(r"^(\s*)(\w+)(\s+)([^\s;]+)(.*# local.*)$")

MAIN = """\
{user}worker_processes auto;
pid {run}/nginx.pid;
error_log {run}/error.log;
daemon off;
events {{ worker_connections 1024; }}
http {{
    sendfile on;
    tcp_nopush on;
    types_hash_max_size 2048;
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    client_body_temp_path {run}/body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
    include {run}/undersigned.conf;
}}
"""


def installed() -> bool:
    """Whether nginx can be run here."""
    return Path(NGINX).exists()


def render(values: dict[str, str], text: str | None = None) -> str:
    """The shipped file with the first value of each `# local` line set from `values`,
    keyed by the line's directive (`listen`, `server`, `root`...)."""
    lines = []
    for line in (CONF.read_text() if text is None else text).splitlines():
        match = _LOCAL.match(line)
        if match:
            indent, directive, space, _, rest = match.groups()
            line = f"{indent}{directive}{space}{values[directive]}{rest}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def command(run_dir: Path, port: int, upstream: str) -> list[str]:
    """Write the configuration under `run_dir` for nginx on 127.0.0.1:`port` in front of
    `upstream` (host:port); return the command that runs it in the foreground."""
    run_dir.mkdir(parents=True, exist_ok=True)
    site = render(
        {
            "server": upstream,
            "proxy_cache_path": str(run_dir / "cache"),
            "listen": f"127.0.0.1:{port}",
            "root": str(ROOT),
            "access_log": str(run_dir / "access.log"),
            "error_log": str(run_dir / "error.log"),
        }
    )
    (run_dir / "undersigned.conf").write_text(site)
    main = run_dir / "nginx.conf"
    # As root, nginx's workers would run as `nobody`, who may not enter a private temp folder.
    user = "user root;\n" if os.geteuid() == 0 else ""
    main.write_text(MAIN.format(run=run_dir, user=user))
    return [NGINX, "-p", str(run_dir), "-c", str(main)]
