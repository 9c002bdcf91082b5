#!/usr/bin/env python3
"""Check the YAML front matter of a Space's README.md (the Space card) for what a Docker Space needs.

    "$(scripts/docker-venv.sh)" scripts/check-space-card.py spaces/huggingface/README.md

Prints `PATH: problem` per problem and exits 1, or `ok: PATH` and exits 0. The keys follow the
Hub's Spaces configuration reference: the Hub reads this block to build and run the Space.
"""

import sys

import yaml

COLORS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}


def front_matter(text):
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        return None
    for i, line in enumerate(lines[1:], start=1):
        if line.strip() == "---":
            return "\n".join(lines[1:i])
    return None


def check(path):
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        return [f"cannot read: {e.strerror}"]
    block = front_matter(text)
    if block is None:
        return ["no YAML front matter: the file must start with a `---` line and close it with another"]
    try:
        card = yaml.safe_load(block)
    except yaml.YAMLError as e:
        return [f"front matter is not valid YAML: {str(e).splitlines()[0]}"]
    if not isinstance(card, dict):
        return ["front matter must be a YAML mapping (key: value lines)"]

    problems = []
    if card.get("sdk") != "docker":
        problems.append(f"sdk: must be `docker` (found {card.get('sdk')!r})")
    if card.get("app_port") != 7860 or isinstance(card.get("app_port"), bool):
        problems.append(f"app_port: must be the integer 7860, the port entrypoint serves (found {card.get('app_port')!r})")
    for key in ("title", "emoji", "short_description"):
        if not isinstance(card.get(key), str) or not card[key].strip():
            problems.append(f"{key}: must be a non-empty string")
    if isinstance(card.get("short_description"), str) and len(card["short_description"]) > 60:
        problems.append(f"short_description: at most 60 characters (found {len(card['short_description'])})")
    for key in ("colorFrom", "colorTo"):
        if card.get(key) not in COLORS:
            problems.append(f"{key}: one of {', '.join(sorted(COLORS))} (found {card.get(key)!r})")
    if "pinned" in card and not isinstance(card["pinned"], bool):
        problems.append(f"pinned: must be true or false (found {card['pinned']!r})")
    return problems


def main():
    failed = False
    for path in sys.argv[1:]:
        problems = check(path)
        for p in problems:
            print(f"{path}: {p}")
        if problems:
            failed = True
        else:
            print(f"ok: {path}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
