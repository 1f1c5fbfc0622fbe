"""python -m atrous"""

from atrous.cli import main

main()
