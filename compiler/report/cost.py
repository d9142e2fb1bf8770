"""The report's cost model lives with the target: `s4dc.targets.loihi2.cost`
(a target-side concept; docs/hardware_model.md). Re-exported here so the
report's imports keep one name."""
from s4dc.targets.loihi2.cost import *  # noqa: F401,F403
from s4dc.targets.loihi2.cost import (ASSUMPTIONS, E_DEND, E_HOP_X, E_HOP_Y, E_SPIKE, E_STEP, E_SYNOP,  # noqa: F401
                                      FIGURES, P_CHIP, P_CORE, SOURCES, STAGES, SYNMEM_BYTES_PER_SYNOP,
                                      T_BARRIER_CHIP, T_BIT, T_DEND, T_SYNMEM, T_SYNOP)
