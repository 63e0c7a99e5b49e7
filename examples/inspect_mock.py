"""`inspect eval examples/inspect_mock.py`: clinicgym/consultation played by inspect's mock model.

inspect's `mockllm/model` counts tokens with tiktoken, which downloads its encoding on first use,
so `--model mockllm/model` alone fails offline; this task gives the mock model scripted replies
with their token usage set (`mock_clinician`), which runs anywhere without a network.
"""

from inspect_ai import Task, task, task_with
from inspect_ai.model import get_model

from clinicgym.runs.integrations.inspect_task import consultation, mock_clinician


@task
def consultation_mock(cases: int = 3, seed: int = 0) -> Task:
    """The clinicgym consultation task with a scripted mock clinician (offline)."""
    played = consultation(cases=cases, seed=seed)
    return task_with(played, model=get_model("mockllm/model", custom_outputs=mock_clinician()))
