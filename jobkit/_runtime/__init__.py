"""The worker's services: producer, executor, completer, maintenance and timers."""
