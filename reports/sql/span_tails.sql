-- The tails of some state spans: the times of their nights near their last one.
SELECT id AS span_id, last_at, tail FROM state_spans WHERE id IN :ids
