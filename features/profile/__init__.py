"""Stage 3, profiles: point-in-time customer profiles, labels and training sets, in DuckDB SQL.

- `wide`: the wide profile, one row per customer known at `as_of` (core columns and consent);
- themes, a module each: `rfm`, `engagement`, `fatigue`, `affinities`, `activity` (by hour of week);
- `windows`: the SQL fragments the themes share (time windows, event cells);
- `repeat_purchases`: purchase summaries and the BG/NBD features built on them;
- `labels`: who bought after `as_of`;
- `feature_lists`: the named, versioned feature lists models record;
- `training_sets`: profiles at several as-of dates with their labels.
"""
