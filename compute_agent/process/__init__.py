"""Process plumbing: the concurrency backend (chosen before anything else is
imported, so this package's __init__ imports nothing), sd_notify, Guru
Meditation Reports, logging set-up and the version."""
