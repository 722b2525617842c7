"""Synthetic note text: radiology reads whose mention of life support follows the text risk
factor, and discharge summaries that state the outcome (which point-in-time correctness must
keep away from every score)."""

from __future__ import annotations

import numpy as np

SUPPORT = (
    "Endotracheal tube terminates 4 cm above the carina.",
    "Patient remains intubated and sedated on propofol.",
    "Norepinephrine infusion titrated to a mean arterial pressure above 65.",
    "Right internal jugular central venous catheter in place.",
    "Increasing oxygen requirement overnight, now on FiO2 of 80 percent.",
    "Family meeting held to discuss goals of care.",
    "Vasopressin added for refractory hypotension.",
    "Continuous renal replacement therapy was started.",
)
RECOVERY = (
    "No endotracheal tube is seen.",
    "Patient was extubated yesterday and is on 2 L nasal cannula.",
    "Central line has been removed.",
    "Patient is ambulating with physical therapy.",
    "Tolerating a regular diet.",
    "Awake, alert and following commands.",
)
NEUTRAL = (
    "Heart size is normal.",
    "No pneumothorax.",
    "Mediastinal and hilar contours are unchanged.",
    "Comparison is made to the prior study.",
    "Osseous structures are intact.",
    "Portable AP view of the chest.",
    "Small left pleural effusion is stable.",
)


def radiology_report(rng: np.random.Generator, severity: float) -> str:
    """5-9 sentences; most state life support or recovery, support more likely with ``severity``."""
    p_support = 1 / (1 + np.exp(-(1.8 * severity - 0.4)))
    sentences = ["FINDINGS:"]
    for _ in range(rng.integers(5, 10)):
        draw = rng.uniform()
        if draw < 0.7:
            pool = SUPPORT if rng.uniform() < p_support else RECOVERY
        else:
            pool = NEUTRAL
        sentences.append(pool[rng.integers(len(pool))])
    sentences.append("IMPRESSION: See findings above.")
    return " ".join(sentences)


def discharge_summary(rng: np.random.Generator, died: bool, name: str) -> str:
    outcome = (
        "The patient expired on the unit despite maximal support."
        if died else "The patient was discharged home in stable condition."
    )
    return (
        f"Name: {name}. Service: MEDICINE. Brief hospital course: admitted to the ICU. "
        f"{outcome} Follow-up with primary care in {int(rng.integers(1, 4))} weeks."
    )
