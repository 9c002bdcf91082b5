#!/usr/bin/env python3
"""Print a Dockerfile's stages as JSON, parsed by BuildKit's parser (PyPI `dockerfile`), so
tests/space.rs can replay individual RUN steps exactly as `docker build` would read them.

    dockerfile_runs.py PATH  ->  [{"stage": "build", "args": {"NAME": "default", ...},
                                   "runs": ["shell text", ...]}, ...]
"""

import json
import sys

import dockerfile

stages = []
for c in dockerfile.parse_file(sys.argv[1]):
    if c.cmd == "FROM":
        name = c.value[2] if len(c.value) >= 3 else str(len(stages))
        stages.append({"stage": name, "args": {}, "runs": []})
    elif stages and c.cmd == "ARG":
        for v in c.value:
            k, _, d = v.partition("=")
            stages[-1]["args"][k] = d
    elif stages and c.cmd == "RUN" and not c.json:
        stages[-1]["runs"].append(c.value[0])
print(json.dumps(stages))
