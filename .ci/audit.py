"""pip-audit over the pinned dependency set (`make audit`, run by `.ci/run`).

    python .ci/audit.py requirements/dev.txt

Fails on any known vulnerability in the lock file unless requirements/audit-ignore.txt lists
it with a reason. Where no advisory database answers, it says so and passes: an unreachable
service is not a vulnerability, and CI runs in places that reach PyPI's files but not its
advisory API. "Answers" is checked, not assumed: pip-audit counts a package the service has
no record of as skipped and still ends with "No known vulnerabilities found" and status 0.

Services are tried in order (PyPI's own advisory feed, then OSV) until one answers for every
pinned package.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IGNORE_FILE = ROOT / "requirements" / "audit-ignore.txt"
SERVICES = ("pypi", "osv")
SKIPPED = "pip-audit skipped: advisory database unreachable"

# What pip-audit prints when it cannot reach a service (its own messages and the requests and
# urllib3 errors it lets through as a traceback).
UNREACHABLE_MARKS = (
    "Could not connect",
    "network may be blocking",
    "ConnectionError",
    "ConnectTimeout",
    "ReadTimeout",
    "NameResolutionError",
    "Max retries exceeded",
    "not redirecting properly",
)


def ignored_ids(path: Path = IGNORE_FILE) -> list[str]:
    """The ignore list: one advisory id a line, each with a `# reason`; a bare id is refused
    so that nothing is waved through without a written decision."""
    ids = []
    if not path.exists():
        return ids
    for number, line in enumerate(path.read_text().splitlines(), 1):
        entry, _, reason = line.partition("#")
        if not entry.strip():
            continue
        if not reason.strip():
            sys.exit(f"{path.name}:{number}: {entry.strip()} needs a '# reason' on its line")
        ids.append(entry.split()[0])
    return ids


def run_service(lock: Path, service: str, ignore: list[str]) -> tuple[str, str | dict]:
    """("unreachable", why) or ("answered", pip-audit's JSON report) or ("error", output)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [
            sys.executable, "-m", "pip_audit",
            "--requirement", str(lock),
            # audit exactly the pinned set: no resolution, no pip, every line hashed
            "--require-hashes", "--disable-pip",
            "--vulnerability-service", service,
            "--format", "json", "--output", str(report),
            "--desc", "off", "--aliases", "on",
            "--progress-spinner", "off", "--timeout", "30",
        ]
        for vuln_id in ignore:
            cmd += ["--ignore-vuln", vuln_id]
        done = subprocess.run(cmd, capture_output=True, text=True)
        output = done.stdout + done.stderr
        if not report.exists() or not report.read_text().strip():
            if any(mark in output for mark in UNREACHABLE_MARKS):
                last = [line for line in output.splitlines() if line.strip()][-1:]
                return "unreachable", f"{service}: {last[0][:200] if last else 'no answer'}"
            return "error", output
        data = json.loads(report.read_text())
    deps = data["dependencies"]
    skipped = [d for d in deps if d.get("skip_reason")]
    if deps and len(skipped) == len(deps):
        return "unreachable", f"{service}: no record for any of the {len(deps)} pinned packages"
    return "answered", data


def main(lock: Path) -> int:
    ignore = ignored_ids()
    why_not = []
    for service in SERVICES:
        status, result = run_service(lock, service, ignore)
        if status == "error":
            print(f"pip-audit failed ({service}):\n{result}", file=sys.stderr)
            return 2
        if status == "unreachable":
            why_not.append(result)
            continue
        return report(lock, service, result, ignore)
    print(f"{SKIPPED} ({'; '.join(why_not)}); the lock file is not audited this run.")
    return 0


def report(lock: Path, service: str, data: dict, ignore: list[str]) -> int:
    deps = data["dependencies"]
    skipped = [d for d in deps if d.get("skip_reason")]
    found = [(d, v) for d in deps for v in d.get("vulns", [])]
    for dep, vuln in found:
        fixed = ", ".join(vuln["fix_versions"]) or "no fixed release"
        aliases = ", ".join(vuln.get("aliases", []))
        print(f"VULNERABLE {dep['name']}=={dep['version']}: {vuln['id']} ({aliases}) fixed in: {fixed}")
    for dep in skipped:
        print(f"NOT AUDITED {dep['name']}: {dep['skip_reason']}")
    audited = len(deps) - len(skipped)
    print(
        f"pip-audit ({service}): {audited} of {len(deps)} pinned packages in {lock} audited, "
        f"{len(found)} known vulnerabilities, {len(ignore)} ignored by requirements/audit-ignore.txt"
    )
    if found:
        print(
            "Pin a fixed release (pyproject.toml or requirements/constraints.in, then `make lock`); "
            "where none exists, decide and record it in requirements/audit-ignore.txt."
        )
        return 1
    if skipped:
        # the service answered for the others, so these are unknown to it, not unreachable
        print("Some pinned packages could not be audited: treat as a failure until explained.")
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1])))
