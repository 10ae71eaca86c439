"""The worker's runtime: services over a ledger of held jobs, wired by a small supervisor.

- ``ledger``: the jobs held (prefetched or in a slot) and the room to claim; pure bookkeeping.
- ``producer``: claims into that room (wake-ups, prefetch, sleeping until the next run time).
- ``pool``: executor threads and the async loop; ``deadlines``: timeouts and kill_grace.
- ``executor``: runs one job and says what happened (an ``outcome``); ``policy``: what that becomes.
- ``completer``: writes the policy's transitions in batches and emits the events.
- ``reporter``: progress (coalesced) and checkpoints from a running job.
- ``lease``: registration, heartbeat, fencing and the control loop (requests, reconciliation).
- ``maintenance``: rescue, prune and housekeeping passes; ``timers``: the only APScheduler import.
- ``lifecycle``: stopping and stopping on its own (fatal, with an exit code).
- ``worker``: the supervisor; ``signals``: running it in the foreground until SIGINT/SIGTERM.
"""
