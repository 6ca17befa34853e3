"""A pytest plugin for the nbval runs: wait up to a minute for a cell's outputs.

After a cell's execute reply, nbval reads the kernel's output messages with a fixed 5 s
timeout (``IPyNbCell.output_timeout``) and fails the cell when none arrives in time. A
training cell streams hundreds of progress-bar updates; on a loaded 2-core machine the
kernel's output thread can fall more than 5 s behind (seen once in a full local run).
The cell's own execution timeout (``--nbval-cell-timeout``) is unchanged.
"""

import nbval.plugin

_init = nbval.plugin.IPyNbCell.__init__


def _patient_init(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    self.output_timeout = 60


nbval.plugin.IPyNbCell.__init__ = _patient_init
