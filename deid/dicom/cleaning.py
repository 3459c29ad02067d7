"""The conservative cleaner for free text kept by the Clean Descriptors, Clean Structured Content
and Clean Graphics options.

It is an allow-list cleaner: text is split into words, and a word survives only if it is on
:data:`SAFE_WORDS` (modality, anatomy, view, technique and sequence vocabulary) or is a number of
at most three digits. Every other word (names, IDs, dates, places, free comments) is dropped.
When nothing survives the value becomes empty. This loses some harmless words; it never keeps
a word it does not know.
"""

from __future__ import annotations

import re

_SAFE_TEXT = """
    AP PA LAT LATERAL LL RL LR OBL OBLIQUE AXIAL AX SAG SAGITTAL COR CORONAL TRANS TRANSVERSE
    FRONTAL LEFT RIGHT BILATERAL BILAT L R SUPINE PRONE ERECT UPRIGHT DECUBITUS PORTABLE VIEW CR
    DX CT MR MRI US PET NM XA RF MG OP OPT SC OT PT SR DOC ES IO PX RG BMD HEAD BRAIN SKULL NECK
    CSPINE TSPINE LSPINE SPINE CERVICAL THORACIC LUMBAR SACRUM CHEST THORAX LUNG LUNGS HEART
    CARDIAC ABDOMEN ABD PELVIS HIP KNEE ANKLE FOOT FEET HAND WRIST ELBOW SHOULDER ARM LEG FEMUR
    TIBIA HUMERUS BREAST LIVER KIDNEY RENAL PROSTATE SINUS ORBIT FACE EXTREMITY EXTREMITIES
    WHOLE BODY WB EYE RETINA FUNDUS MACULA DISC OPTIC ANGIO ANGIOGRAPHY AORTA CAROTID CORONARY
    VASCULAR WITH WITHOUT W WO CONTRAST NON PRE POST ENHANCED IV ORAL BOLUS ARTERIAL VENOUS
    PORTAL DELAYED PHASE LOW DOSE HIGH RES RESOLUTION THIN THICK SLICE SLICES MIP MPR RECON
    RECONSTRUCTION SOFT TISSUE BONE STANDARD SHARP SMOOTH KERNEL WINDOW HELICAL SPIRAL
    SEQUENTIAL SCOUT LOCALIZER LOCALISER TOPOGRAM SURVIEW PLAN ROUTINE PROTOCOL SERIES IMAGE
    IMAGES SCAN STUDY EXAM SCREENING DIAGNOSTIC FOLLOW UP FU T1 T2 T2STAR PD FLAIR STIR DWI DTI
    ADC SWI GRE SE TSE FSE EPI MPRAGE SPGR TOF PC BOLD PERFUSION DIFFUSION FAT SAT FS WATER
    DIXON INPHASE OPPOSED IN OUT OF MAP TRACE B0 B1 GADO GAD GADOLINIUM IODINE COLOR COLOUR RED
    FREE GREEN BLUE AUTOFLUORESCENCE FLUORESCEIN ICG OCT WIDEFIELD MONO MM CM MS SEC S KV MA MAS
    DEG AND OR THE A AN OF TO FOR ON AT BY NO YES NONE NOT
"""
SAFE_WORDS: frozenset[str] = frozenset(_SAFE_TEXT.split())

_WORD = re.compile(r"[A-Za-z0-9]+")


def clean_text(text: str) -> str:
    """Keep only safe words of ``text``, joined by single spaces.

    Parameters
    ----------
    text : str
        A free-text value (LO, SH, ST, LT, UT, UC or CS).

    Returns
    -------
    str
        The surviving words in their original order and case; "" when none survive.
    """
    kept = [
        word
        for word in _WORD.findall(text)
        if word.upper() in SAFE_WORDS or (word.isdigit() and len(word) <= 3)
    ]
    return " ".join(kept)
