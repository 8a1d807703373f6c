-- What answers are judged by (keep in step with ../postgres/0010_answer_records.sql).

-- The settings an answer was made under, kept with a verdict on it: a JSON object (mode, fusion
-- weights, passages, margin, reading order, model refusal, query expansion, ...); NULL for
-- verdicts recorded before it was kept.
ALTER TABLE answer_feedback ADD COLUMN settings TEXT;

-- The answers of an evaluation run that also asked the model: a JSON object (model, questions
-- asked, answers citing an expected page, refusals, first-token time); NULL when the run scored
-- retrieval only.
ALTER TABLE eval_runs ADD COLUMN answers TEXT;
