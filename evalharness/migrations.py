"""The store's schema: named, numbered, forward-only migrations (``evalharness.store.migrate`` applies them).

A store written by any earlier version opens: the migrations it has not seen run once, in order, each in a transaction.
"""

from __future__ import annotations

# Forward-only: never edit a released migration, append a new one. Each runs once, in order, in a transaction.
MIGRATIONS: list[tuple[str, str]] = [
    (
        "runs, checkpoints, train_metrics",
        """
        CREATE TABLE runs (
            run_id VARCHAR PRIMARY KEY,      -- content hash of the resolved training config
            name VARCHAR,
            loss VARCHAR,
            params JSON,
            base_model VARCHAR,
            init_from VARCHAR,               -- a run id or a checkpoint path this run started from
            data JSON,
            config JSON,                     -- the resolved config, everything bound
            code_version VARCHAR,
            status VARCHAR,                  -- running | finished | failed
            out_dir VARCHAR,
            final_step INTEGER,
            created_at TIMESTAMP,
            updated_at TIMESTAMP
        );
        CREATE TABLE checkpoints (
            checkpoint_id VARCHAR PRIMARY KEY,  -- hash(run_id, step)
            run_id VARCHAR,
            step INTEGER,
            path VARCHAR,
            is_final BOOLEAN,
            created_at TIMESTAMP
        );
        CREATE TABLE train_metrics (
            run_id VARCHAR,
            step INTEGER,
            name VARCHAR,
            value DOUBLE,
            PRIMARY KEY (run_id, step, name)
        );
        """,
    ),
    (
        "reference log-prob cache",
        """
        CREATE TABLE reference_logps (
            key VARCHAR PRIMARY KEY,   -- hash(reference fingerprint, prompt ids, response ids, temperature)
            model VARCHAR,             -- the reference model's weight fingerprint
            logp DOUBLE,               -- summed log-prob of the response tokens
            n_tokens INTEGER
        );
        """,
    ),
    (
        "prompts and generations",
        """
        CREATE TABLE prompts (
            prompt_id VARCHAR PRIMARY KEY,   -- content hash of the set, source id and messages
            prompt_set VARCHAR,
            source_id VARCHAR,
            messages JSON,
            reference VARCHAR,
            meta JSON
        );
        CREATE TABLE generations (
            generation_id VARCHAR PRIMARY KEY,  -- hash(checkpoint, prompt, turn, sampling, backend, sample index)
            checkpoint VARCHAR,                 -- checkpoint key: a run checkpoint id or model:<weights fingerprint>
            label VARCHAR,                      -- how leaderboards name it (run name:step or model name)
            checkpoint_path VARCHAR,
            prompt_id VARCHAR,
            turn INTEGER,                       -- 1-based: turn 2 of MT-Bench is conditioned on this sample's turn 1
            sample_index INTEGER,
            sampling JSON,
            temperature DOUBLE,
            backend VARCHAR,
            prompt_text VARCHAR,
            prompt_ids INTEGER[],               -- after the stated truncation (the prompt keeps its last tokens)
            text VARCHAR,
            token_ids INTEGER[],
            n_tokens INTEGER,
            finish_reason VARCHAR,
            prompt_truncated BOOLEAN,
            policy_logp DOUBLE,                 -- Σ log π(y_t|…) at the sampling temperature
            token_logps DOUBLE[],
            reference VARCHAR,                  -- the reference model's fingerprint key
            reference_logp DOUBLE,              -- Σ log ref(y_t|…) at the same temperature (NULL until scored)
            created_at TIMESTAMP
        );
        """,
    ),
    (
        "judgments, scores, metrics, diagnostics",
        """
        CREATE TABLE judgments (
            judgment_id VARCHAR PRIMARY KEY,    -- hash(cache_key, generation_first, generation_second)
            cache_key VARCHAR,                  -- hash(judge id, version, template, prompt, the two texts, order)
            judge VARCHAR,                      -- judge id (never holds a secret)
            judge_version VARCHAR,
            template VARCHAR,                   -- template name and content hash, '' for judges without one
            prompt_id VARCHAR,
            turn INTEGER,
            sample_index INTEGER,
            pair_id VARCHAR,                    -- hash(judge, template, prompt, turn, sample, model A, model B): both orders share it
            model_a VARCHAR,                    -- checkpoint key of the pair's first model (the one being rated)
            model_b VARCHAR,                    -- checkpoint key of the other (the baseline in --baseline mode)
            swapped BOOLEAN,                    -- false: A was shown first, true: B was shown first
            generation_first VARCHAR,
            generation_second VARCHAR,
            verdict VARCHAR,                    -- first | second | tie | unparsed | failed (positions as shown)
            probability DOUBLE,                 -- P(the first shown is preferred) where the judge gives one
            raw VARCHAR,
            latency DOUBLE,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            cost DOUBLE,
            error VARCHAR,
            created_at TIMESTAMP
        );
        CREATE INDEX judgments_cache ON judgments (cache_key);
        CREATE TABLE scores (
            score_id VARCHAR PRIMARY KEY,       -- hash(judge id, version, template, prompt, text)
            judge VARCHAR,
            judge_version VARCHAR,
            generation_id VARCHAR,
            prompt_id VARCHAR,
            score DOUBLE,
            created_at TIMESTAMP
        );
        CREATE TABLE metrics (
            metric_id VARCHAR PRIMARY KEY,      -- hash(checkpoint, dataset, metric, settings)
            checkpoint VARCHAR,                 -- checkpoint key, as in generations
            label VARCHAR,
            dataset VARCHAR,                    -- dataset or prompt-set name plus a content hash of what was read
            metric VARCHAR,
            value DOUBLE,
            n INTEGER,
            se DOUBLE,
            ci_low DOUBLE,
            ci_high DOUBLE,
            settings JSON,                      -- batch size, temperature, bootstrap resamples and seed…
            code_version VARCHAR,
            created_at TIMESTAMP
        );
        CREATE TABLE diagnostics (
            diagnostic_id VARCHAR PRIMARY KEY,  -- hash(kind, checkpoint, dataset, settings, name)
            kind VARCHAR,                       -- information-difference | gradient | monotonicity | density-ratio | beta-sensitivity
            checkpoint VARCHAR,
            dataset VARCHAR,
            name VARCHAR,
            value DOUBLE,
            data JSON,                          -- arrays behind a figure (distributions, per-step values)
            settings JSON,
            code_version VARCHAR,
            created_at TIMESTAMP
        );
        """,
    ),
    (
        "experiments",
        """
        CREATE TABLE experiments (
            experiment_id VARCHAR PRIMARY KEY,  -- content hash of the resolved experiment
            name VARCHAR,
            source VARCHAR,                     -- the TOML file it was read from
            config JSON,                        -- the resolved experiment: every run's bound config, grids expanded
            runs JSON,                          -- entry name to run id
            code_version VARCHAR,
            status VARCHAR,                     -- running | finished | failed
            created_at TIMESTAMP,
            updated_at TIMESTAMP
        );
        """,
    ),
    (
        "checkpoint weight fingerprints",
        """
        ALTER TABLE checkpoints ADD COLUMN fingerprint VARCHAR
        """,
    ),
    (
        "strong verdicts",
        """
        ALTER TABLE judgments ADD COLUMN strong BOOLEAN  -- the judge said much better (Arena-Hard's [[A>>B]]), NULL: no such level
        """,
    ),
    (
        "single-answer ratings",
        """
        CREATE TABLE ratings (
            rating_id VARCHAR PRIMARY KEY,      -- hash(cache_key, generation)
            cache_key VARCHAR,                  -- hash(judge id, version, template, conversation, references, answer)
            judge VARCHAR,
            judge_version VARCHAR,
            template VARCHAR,
            prompt_id VARCHAR,
            turn INTEGER,
            sample_index INTEGER,
            model VARCHAR,                      -- checkpoint key of the rated model
            generation_id VARCHAR,
            rating DOUBLE,                      -- the grade (MT-Bench: 1 to 10), NULL unless status is rated
            status VARCHAR,                     -- rated | unparsed | failed
            raw VARCHAR,
            latency DOUBLE,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            cost DOUBLE,
            error VARCHAR,
            created_at TIMESTAMP
        )
        """,
    ),
    (
        "run aliases",
        """
        CREATE TABLE run_aliases (
            alias VARCHAR PRIMARY KEY,          -- a further name of one run (a recipe's name for its last stage, a
            run_id VARCHAR,                     -- name asked for a config that had already run under another)
            created_at TIMESTAMP
        )
        """,
    ),
    (
        "claim verdicts",
        """
        CREATE TABLE claims (
            claim_id VARCHAR PRIMARY KEY,       -- hash(experiment, evaluation, position, claim)
            experiment_id VARCHAR,              -- the experiment that declared it ('' for a claims file on a board)
            evaluation JSON,                    -- the board it was measured on: judge, version, prompt set, sampling,
                                                -- baseline
            position INTEGER,                   -- its place among the experiment's [[claims]]
            text VARCHAR,
            claim JSON,                         -- every field of the claim (form, quantities, a, b, relation, ...)
            verdict VARCHAR,                    -- reproduced | contradicted | inconclusive
            effect DOUBLE,                      -- A - B, a matched gap or a ratio (the claim's form says which)
            ci_low DOUBLE,
            ci_high DOUBLE,
            p_value DOUBLE,
            p_adjusted DOUBLE,                  -- Holm over the claims evaluated together
            result JSON,                        -- the verdict as printed: prompts, seeds, MDE, note
            code_version VARCHAR,
            created_at TIMESTAMP
        )
        """,
    ),
]
SCHEMA_VERSION = len(MIGRATIONS)
