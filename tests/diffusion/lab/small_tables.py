"""Two-column tables under the real tables' names and jobs, for tests of the table store's mechanics (not of a schema)."""

from diffusion.lab.tables import SCORES, TRIALS, Column, TableSchema

MODEL = Column("model", "string")
SCORES_FD = TableSchema(SCORES.name, SCORES.job, (MODEL, Column("fd", "float")), key="model")
TRIALS_ID = TableSchema(TRIALS.name, TRIALS.job, (MODEL, Column("trial_id", "string")), key="model")
TRIALS_LOSS = TableSchema(TRIALS.name, TRIALS.job, (MODEL, Column("loss", "float")), key="model")
LEADERBOARD = TableSchema("leaderboard", "a test", (MODEL, Column("fd", "float")), key="model")
