"""Allow ``python -m bolt_bot``."""

from bolt_bot.cli import main

main()
