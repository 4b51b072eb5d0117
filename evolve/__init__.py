"""Program search: mutation of update-rule programs and the evolutionary loop around it."""
