"""clinicgym: Gymnasium environments in which a model under test plays the clinician.

The folders of the repository are the architecture (see DESIGN.md): `patients` <- `envs` <-
{`policies`, `agents`} <- `scoring` <- `runs`. Importing `clinicgym.envs` registers the
Gymnasium ids.
"""

from clinicgym.errors import ClinicGymError

__version__ = "0.1.0"

__all__ = ["ClinicGymError", "__version__"]
