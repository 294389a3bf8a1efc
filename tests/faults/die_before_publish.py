"""gunicorn settings for a failpoint: the repo's own, but a web process sometimes dies
after a transaction committed and before its tasks were published (`-c` this file)."""

import os
import random
import runpy
from pathlib import Path

DIE_RATE = 0.3

_repo_settings = runpy.run_path(str(Path(__file__).resolve().parents[2] / "gunicorn.conf.py"))
globals().update({k: v for k, v in _repo_settings.items() if not k.startswith("_")})


def post_fork(server: object, worker: object) -> None:
    """Do what the repo's post_fork does, then arm the failpoint in this web process."""
    _repo_settings["post_fork"](server, worker)
    from project.tasks import outbox

    publish = outbox.publish

    def die_sometimes(*args: object, **kwargs: object) -> None:
        if random.random() < DIE_RATE:
            os._exit(1)  # as a SIGKILL or OOM kill would: no cleanup, the reply never sent
        publish(*args, **kwargs)

    outbox.publish = die_sometimes
