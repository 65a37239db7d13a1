"""Fixed vocabularies for the demo districts: district, school and person names, excuse and behavior codes.

Kept apart from the generator so the generator reads as logic and this module reads as reference data.
"""

from __future__ import annotations

from dataclasses import dataclass

# The first four match the checked-in districts.yml, so `demo-data` rewrites that file without changing it.
DISTRICT_NAMES: tuple[str, ...] = (
    "Riverbend Unified", "Cedar Hollow Public Schools", "Prairie Lakes Consolidated",
    "North Fork Community Schools", "Mesa Verde Unified", "Pine Ridge Community Schools",
    "Silver Creek School District", "Eagle Butte Consolidated", "Red Rock Unified", "Lone Pine Public Schools",
    "Willow Springs School District", "Granite Falls Unified", "Blue Mesa Consolidated",
    "Sandhill Community Schools", "Clearwater Unified", "Stone Lake Public Schools", "Bear Creek School District",
    "Twin Buttes Consolidated", "Painted Desert Unified", "High Plains Community Schools",
    "Turtle Mountain Unified", "Crow Creek School District", "Cherry Valley Public Schools",
    "Wind River Consolidated",
)

SCHOOL_PLACES: tuple[str, ...] = (
    "Lincoln", "Washington", "Jefferson", "Roosevelt", "Riverside", "Hillcrest", "Oak Grove", "Maple Street",
    "Sunset", "Meadowbrook", "Pinecrest", "Lakeview", "Cottonwood", "Aspen", "Juniper", "Sagebrush", "Canyon",
    "Mesa", "Prairie View", "Eagle Ridge", "Sitting Bull", "Red Cloud", "Spring Creek", "Willow Bend",
    "Bluebird", "Cedar Point", "Sky Valley", "Morning Star", "Buffalo Trail", "Little Wound", "Rock Point",
    "Many Farms", "Blackwater", "Chinle", "Shiprock", "Crystal Lake", "Elk Horn", "Iron Springs",
)

FIRST_NAMES: tuple[str, ...] = (
    "Aiden", "Amara", "Ava", "Benjamin", "Brooklyn", "Caleb", "Camila", "Carter", "Chloe", "Daniel", "Dakota",
    "Elijah", "Ella", "Emma", "Ethan", "Evelyn", "Gabriel", "Grace", "Hannah", "Isaac", "Isabella", "Jackson",
    "Jayden", "Jordan", "Kai", "Kaya", "Leah", "Liam", "Lily", "Logan", "Lucas", "Luna", "Mason", "Maya",
    "Mia", "Nathan", "Noah", "Nova", "Oliver", "Olivia", "Paisley", "River", "Samuel", "Sara", "Sofia",
    "Taylor", "Tokala", "Winona", "Wyatt", "Zoe", "Aylen", "Mateo", "Santiago", "Valentina", "Diego", "Ximena",
    "Jesse", "Skye", "Cheyenne", "Koda",
)

LAST_NAMES: tuple[str, ...] = (
    "Begay", "Yazzie", "Benally", "Tsosie", "Nez", "Etsitty", "Smith", "Johnson", "Williams", "Brown", "Jones",
    "Garcia", "Miller", "Davis", "Rodriguez", "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson",
    "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White",
    "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson", "Walker", "Young", "Allen", "King",
    "Wright", "Scott", "Torres", "Nguyen", "Hill", "Flores", "Green", "Adams", "Nelson", "Baker", "Two Bulls",
    "Red Horse", "Whitehorse", "Eagleheart", "Running Water", "Long Soldier", "Black Elk", "Chee", "Largo",
    "Morningstar",
)


@dataclass(frozen=True)
class ExcuseCode:
    mnemonic: str
    description: str
    status: str
    excuse: str
    state_code: str
    active: bool = True
    elementary: bool = True  # offered on elementary and preschool calendars too


# Every (status, excuse) group the generator draws from has at least one active code on every calendar;
# tardies with an unknown excuse deliberately have none, so those rows carry no excuse_id.
EXCUSE_CODES: tuple[ExcuseCode, ...] = (
    ExcuseCode("ILL", "Illness", "A", "E", "AE01"),
    ExcuseCode("MED", "Medical or dental appointment", "A", "E", "AE02"),
    ExcuseCode("PAR", "Excused by parent note", "A", "E", "AE03"),
    ExcuseCode("BRV", "Bereavement", "A", "E", "AE04", elementary=False),
    ExcuseCode("UNX", "Unexcused absence", "A", "U", "AU01"),
    ExcuseCode("TRU", "Truancy", "A", "U", "AU02", elementary=False),
    ExcuseCode("UNV", "Unverified absence", "A", "", "AN01"),
    ExcuseCode("SCH", "School-sponsored activity", "A", "X", "AX01"),
    ExcuseCode("FLD", "Field trip", "A", "X", "AX02"),
    ExcuseCode("TDY", "Tardy", "T", "U", "TU01"),
    ExcuseCode("TDE", "Tardy - excused", "T", "E", "TE01"),
    ExcuseCode("ERE", "Early release - excused", "E", "E", "EE01"),
    ExcuseCode("ERU", "Early release - unexcused", "E", "U", "EU01"),
    ExcuseCode("REL", "Religious observance (retired code)", "A", "E", "AE05", active=False),
)

# (code, name, category, state_event_code, active)
BEHAVIOR_TYPES: tuple[tuple[str, str, str, str | None, bool], ...] = (
    ("FIGHT", "Fighting", "Violence", "V01", True),
    ("ASLT", "Physical aggression", "Violence", "V02", True),
    ("DISR", "Classroom disruption", "Conduct", "C01", True),
    ("DEFI", "Defiance", "Conduct", "C02", True),
    ("LANG", "Inappropriate language", "Conduct", "C04", True),
    ("TECH", "Technology misuse", "Conduct", None, True),
    ("BULL", "Bullying", "Harassment", "H01", True),
    ("VAPE", "Vaping", "Substance", "S02", True),
    ("TOBA", "Tobacco", "Substance", "S01", True),
    ("THEFT", "Theft", "Property", "P01", True),
    ("VAND", "Vandalism", "Property", "P02", True),
    ("WEAP", "Weapon possession", "Weapons", "W01", True),
    ("HALL", "Hall pass violation (retired)", "Conduct", None, False),
)

# (code, name, state_response_code, active)
BEHAVIOR_RESPONSES: tuple[tuple[str, str, str | None, bool], ...] = (
    ("WARN", "Verbal warning", None, True),
    ("CONF", "Parent conference", "R10", True),
    ("DET", "Detention", "R20", True),
    ("ISS", "In-school suspension", "R30", True),
    ("OSS", "Out-of-school suspension", "R40", True),
    ("EXP", "Expulsion", "R50", True),
    ("LOSS", "Loss of privilege (retired)", None, False),
)

# (code, name, state_resolution_code, active)
BEHAVIOR_RESOLUTIONS: tuple[tuple[str, str, str | None, bool], ...] = (
    ("RES", "Resolved", "Z1", True),
    ("REF", "Referred to counselor", "Z2", True),
    ("LAW", "Referred to law enforcement", "Z3", True),
    ("MED", "Peer mediation", "Z4", True),
    ("PEND", "Pending review", None, True),
)

ATTENDANCE_COMMENTS: tuple[str, ...] = (
    "Parent called", "Doctor's note on file", "Left with guardian", "Bus late", "Called in by grandparent",
    "Sent to nurse", "Family emergency", "Email from parent",
)
