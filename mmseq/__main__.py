import sys

from mmseq.cli import main

sys.exit(main())
