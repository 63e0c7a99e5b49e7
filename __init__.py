"""clinicgym: Gymnasium environments in which a model under test plays the clinician.

The folders of the repository are the architecture (docs/architecture.md): `patients` <-
`envs` <- {`policies`, `agents`} <- `scoring` <- `runs`. Importing `clinicgym` registers the
Gymnasium ids, e.g. `gymnasium.make("clinicgym/Consultation-v0")`.
"""

__version__ = "0.1.0"

from clinicgym._registration import CONSULTATION_ID, register_envs
from clinicgym.errors import ClinicGymError

register_envs()

__all__ = ["CONSULTATION_ID", "ClinicGymError", "__version__"]
