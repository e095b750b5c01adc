"""Run an RQ worker (with the scheduler) on the app's queues: the same command as `inbox worker`.

    python worker.py           work until stopped
    python worker.py --burst   run what is queued, then exit
"""

from inbox.cli import worker_command

if __name__ == "__main__":
    worker_command(prog_name="python worker.py")
