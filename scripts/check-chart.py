#!/usr/bin/env python3
"""Checks the ringside Helm chart without helm (there is no helm package in Debian).

Usage: check-chart.py [--chart DIR] [--render-config FILE]

Checks:
  - Chart.yaml and values.yaml are well-formed YAML mappings; Chart.yaml has apiVersion
    (v2), name (ringside) and a SemVer version;
  - every .Values.a.b.c that templates/*.yaml, *.tpl and NOTES.txt use is defined in
    values.yaml (each step of the path exists; a path may not go below a non-mapping);
  - each template's actions balance: if/range/with/define/block against end, else inside
    a block, no {{ or }} left unpaired; every include/template names a defined template;
  - ringside.config is a mapping whose JSON the daemon can take: http.address listens
    beyond loopback when the HTTP endpoint is on (the kubelet probes the pod IP),
    listen.socket and state_dir are absolute, and membership.consul.address is left out
    (so CONSUL_HTTP_ADDR from the pod applies);
  - securityContext keeps the sidecar non-root, read-only, without privilege escalation,
    with ALL capabilities dropped and the RuntimeDefault seccomp profile.

--render-config FILE writes values.ringside.config as JSON (what the ConfigMap's
config.json holds: toPrettyJson of the same dict) for `ringside --check-config FILE`.

Prints "check-chart: ok (...)" and exits 0, or lists every problem and exits 1 (2 for a
usage error or a missing python3-yaml).
"""

import argparse
import glob
import json
import os
import re
import sys

try:
    import yaml
except ImportError:
    print("check-chart: python3-yaml is required (apt-get install python3-yaml)", file=sys.stderr)
    sys.exit(2)

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CHART = os.path.join(HERE, os.pardir, "helm", "ringside")

ACTION = re.compile(r"{{-?(.*?)-?}}", re.S)
VALUES_REF = re.compile(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
INCLUDE = re.compile(r'\b(?:include|template)\s+"([^"]+)"')
DEFINE = re.compile(r'^\s*(?:define|block)\s+"([^"]+)"')
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
                    r"(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")
OPENERS = ("if", "range", "with", "define", "block")


def load_yaml(path, problems):
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except OSError as e:
        problems.append("%s: cannot read: %s" % (path, e.strerror))
        return None
    except yaml.YAMLError as e:
        problems.append("%s: not well-formed YAML: %s" % (path, str(e).replace("\n", " ")))
        return None
    if not isinstance(doc, dict):
        problems.append("%s: expected a mapping at the top, got %s" % (path, type(doc).__name__))
        return None
    return doc


def check_chart_yaml(chart, problems):
    path = os.path.join(chart, "Chart.yaml")
    doc = load_yaml(path, problems)
    if doc is None:
        return None
    for key in ("apiVersion", "name", "version"):
        if not isinstance(doc.get(key), str) or not doc.get(key):
            problems.append("%s: %s is missing or not a string" % (path, key))
    if doc.get("apiVersion") not in (None, "v2") and isinstance(doc.get("apiVersion"), str):
        problems.append("%s: apiVersion must be v2 (Helm 3), got %s" % (path, doc["apiVersion"]))
    if isinstance(doc.get("version"), str) and not SEMVER.match(doc["version"]):
        problems.append("%s: version %r is not SemVer 2" % (path, doc["version"]))
    if isinstance(doc.get("name"), str) and doc["name"] != os.path.basename(
            os.path.normpath(chart)):
        problems.append("%s: name %r differs from the chart's directory name" % (path, doc["name"]))
    return doc


def lookup(values, dotted):
    """None if values has the path, else why not."""
    node = values
    walked = []
    for part in dotted.split("."):
        if not isinstance(node, dict):
            return "%s is a %s, not a mapping" % (".".join(walked) or "values",
                                                  type(node).__name__)
        if part not in node:
            return "%s is not defined" % ".".join(walked + [part])
        node = node[part]
        walked.append(part)
    return None


def line_of(text, pos):
    return text.count("\n", 0, pos) + 1


def check_templates(chart, values, problems):
    tdir = os.path.join(chart, "templates")
    files = sorted(glob.glob(os.path.join(tdir, "*.yaml")) + glob.glob(os.path.join(tdir, "*.tpl"))
                   + glob.glob(os.path.join(tdir, "*.txt")))
    if not files:
        problems.append("%s: no templates" % tdir)
        return 0, 0
    defined = {}
    included = []
    nrefs = 0
    for path in files:
        rel = os.path.relpath(path, chart)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        # Unpaired delimiters: every {{ must close before the next {{.
        depth = 0
        for m in re.finditer(r"{{|}}", text):
            depth += 1 if m.group() == "{{" else -1
            if depth not in (0, 1):
                problems.append("%s:%d: unpaired %s" % (rel, line_of(text, m.start()), m.group()))
                depth = 0
                break
        if depth != 0:
            problems.append("%s: a {{ is never closed" % rel)
        stack = []
        for m in ACTION.finditer(text):
            body = m.group(1).strip()
            if body.startswith("/*") or body.startswith("`"):
                continue  # a comment, or a raw string printed as is
            ln = line_of(text, m.start())
            word = body.split(None, 1)[0] if body else ""
            if word in OPENERS:
                stack.append((word, ln))
            elif word == "end":
                if not stack:
                    problems.append("%s:%d: end without an open block" % (rel, ln))
                else:
                    stack.pop()
            elif word == "else" and not stack:
                problems.append("%s:%d: else outside a block" % (rel, ln))
            d = DEFINE.match(body)
            if d:
                if d.group(1) in defined:
                    problems.append("%s:%d: template %r defined again (first in %s)"
                                    % (rel, ln, d.group(1), defined[d.group(1)]))
                defined[d.group(1)] = "%s:%d" % (rel, ln)
            for inc in INCLUDE.finditer(body):
                included.append((inc.group(1), rel, ln))
            for ref in VALUES_REF.finditer(body):
                nrefs += 1
                why = lookup(values, ref.group(1)[1:])
                if why is not None:
                    problems.append("%s:%d: .Values%s: %s in values.yaml"
                                    % (rel, ln, ref.group(1), why))
        for word, ln in stack:
            problems.append("%s:%d: %s never ended" % (rel, ln, word))
    for name, rel, ln in included:
        if name not in defined:
            problems.append("%s:%d: includes undefined template %r" % (rel, ln, name))
    return len(files), nrefs


def check_config(values, problems):
    cfg = values.get("ringside", {}).get("config") if isinstance(values.get("ringside"),
                                                                 dict) else None
    if not isinstance(cfg, dict):
        problems.append("values.yaml: ringside.config must be a mapping (the daemon's config)")
        return None
    try:
        json.dumps(cfg, allow_nan=False)
    except (TypeError, ValueError) as e:
        problems.append("values.yaml: ringside.config cannot be written as JSON: %s" % e)
        return None

    def get(obj, *path, default=None):
        for p in path:
            if not isinstance(obj, dict) or p not in obj:
                return default
            obj = obj[p]
        return obj

    http_on = get(cfg, "http", "enabled", default=True)
    addr = get(cfg, "http", "address", default="127.0.0.1:9317")
    if http_on is not False:
        if not isinstance(addr, str) or ":" not in addr:
            problems.append("ringside.config.http.address must be host:port, got %r" % (addr,))
        else:
            host, port = addr.rsplit(":", 1)
            if host.strip("[]") in ("127.0.0.1", "localhost", "::1") or host.startswith("127."):
                problems.append("ringside.config.http.address %s listens on loopback only: the "
                                "kubelet's probes and Prometheus reach the pod IP (use "
                                "0.0.0.0:%s)" % (addr, port))
            if not port.isdigit() or not 0 < int(port) < 65536:
                problems.append("ringside.config.http.address %s: bad port" % addr)
    for path, default in ((("listen", "socket"), "/run/ringside/ringside.sock"),
                          (("state_dir",), "/var/lib/ringside")):
        v = get(cfg, *path, default=default)
        if not isinstance(v, str) or not v.startswith("/"):
            problems.append("ringside.config.%s must be an absolute path, got %r"
                            % (".".join(path), v))
    sock = get(cfg, "listen", "socket", default="/run/ringside/ringside.sock")
    if isinstance(sock, str) and os.path.dirname(sock) in ("/", ""):
        problems.append("ringside.config.listen.socket %s must be in a directory of its own "
                        "(the emptyDir shared with the app)" % sock)
    if get(cfg, "membership", "consul", "address") is not None:
        problems.append("ringside.config.membership.consul.address is set: it would win over "
                        "CONSUL_HTTP_ADDR from consul.* (set consul.address instead)")
    return cfg


def check_security(values, problems):
    sc = values.get("securityContext")
    if not isinstance(sc, dict):
        problems.append("values.yaml: securityContext must be a mapping")
        return
    want = {"runAsNonRoot": True, "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False}
    for k, v in want.items():
        if sc.get(k) is not v:
            problems.append("values.yaml: securityContext.%s must be %s" % (k, str(v).lower()))
    drop = (sc.get("capabilities") or {}).get("drop") or []
    if "ALL" not in drop:
        problems.append("values.yaml: securityContext.capabilities.drop must hold ALL")
    if (sc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        problems.append("values.yaml: securityContext.seccompProfile.type must be RuntimeDefault")
    uid = sc.get("runAsUser")
    if uid is not None and (not isinstance(uid, int) or uid <= 0):
        problems.append("values.yaml: securityContext.runAsUser must be a non-zero uid")


def main():
    ap = argparse.ArgumentParser(description="Check the ringside Helm chart without helm.")
    ap.add_argument("--chart", default=DEFAULT_CHART, help="chart directory (default: %(default)s)")
    ap.add_argument("--render-config", metavar="FILE",
                    help="write values.ringside.config as JSON to FILE")
    args = ap.parse_args()
    chart = os.path.normpath(args.chart)
    if not os.path.isdir(chart):
        print("check-chart: %s is not a directory" % chart, file=sys.stderr)
        return 2

    problems = []
    meta = check_chart_yaml(chart, problems)
    values = load_yaml(os.path.join(chart, "values.yaml"), problems)
    nfiles = nrefs = 0
    cfg = None
    if values is not None:
        nfiles, nrefs = check_templates(chart, values, problems)
        cfg = check_config(values, problems)
        check_security(values, problems)

    if cfg is not None and args.render_config:
        try:
            with open(args.render_config, "w", encoding="utf-8") as f:
                json.dump(cfg, f, indent=2, sort_keys=True)
                f.write("\n")
        except OSError as e:
            problems.append("%s: cannot write: %s" % (args.render_config, e.strerror))

    if problems:
        print("check-chart: %s: %d problem%s:" % (chart, len(problems),
                                                   "" if len(problems) == 1 else "s"),
              file=sys.stderr)
        for p in problems:
            print("  - " + p, file=sys.stderr)
        return 1
    print("check-chart: ok (%s %s: %d templates, %d .Values references defined%s)"
          % (meta["name"], meta["version"], nfiles, nrefs,
             ", config written to %s" % args.render_config if args.render_config else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
