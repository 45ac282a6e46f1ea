#!/usr/bin/env python3
"""Checks what `docker-compose config` does not: every file or folder that
docker-compose.yml mounts from the repository, and its build context and Dockerfile, exist;
the keypulse services use the image built from deploy/Dockerfile.

    check_compose_files.py [--root REPO]
"""
import argparse
import sys
from pathlib import Path

import yaml


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=str(Path(__file__).resolve().parent.parent))
    root = Path(ap.parse_args().root)
    doc = yaml.safe_load((root / "docker-compose.yml").read_text())
    problems = []
    checked = 0
    for name, svc in doc["services"].items():
        for v in svc.get("volumes", []) or []:
            src = v.split(":")[0] if isinstance(v, str) else v.get("source", "")
            if src.startswith("./"):
                checked += 1
                if not (root / src).exists():
                    problems.append(f"service {name}: mounts {src}, which does not exist")
        build = svc.get("build")
        if build:
            ctx = root / (build.get("context", ".") if isinstance(build, dict) else build)
            dockerfile = ctx / (build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile")
            checked += 1
            if not dockerfile.is_file():
                problems.append(f"service {name}: no Dockerfile at {dockerfile}")
    for name in ("keypulse", "simulate"):
        svc = doc["services"].get(name)
        if not svc or not svc.get("build"):
            problems.append(f"service {name} is missing or not built from deploy/Dockerfile")
    print(f"checked {checked} paths referenced by docker-compose.yml")
    if problems:
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()
