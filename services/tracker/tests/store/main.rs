//! The journey store's shared test suite, run against every backend: embedded SQLite (a
//! fresh file per test) and PostgreSQL (a fresh database per test on the server at
//! `DATABASE_URL`, dropped afterwards), plus a PostgreSQL restart test on a private
//! server and the migration of a SQLite database written with the first schema.

mod migration;
mod restart;
mod suite;
mod support;

/// One test per suite function and backend.
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let store = crate::support::TestStore::new(crate::support::Backend::Sqlite).await;
                    crate::suite::$name(store).await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let store = crate::support::TestStore::new(crate::support::Backend::Postgres).await;
                    crate::suite::$name(store).await;
                }
            )*
        }
    };
}

backend_tests!(
    journey_is_ordered_by_start_time_then_position,
    stored_events_read_back_unchanged,
    unknown_ids_have_no_journey_summary_or_stats,
    duplicates_are_ignored_within_and_across_batches,
    a_failing_batch_stores_nothing,
    positions_strictly_increase_in_append_order,
    frame_summary_tracks_stages_duration_and_status,
    camera_stats_count_frames_failures_and_percentiles,
    search_pages_return_every_match_once_in_order,
    retention_by_count_deletes_the_oldest_events_and_fixes_projections,
    retention_by_age_deletes_events_that_ended_before_the_cutoff,
    retention_by_size_keeps_the_log_under_the_limit,
    background_retention_enforces_the_policy,
    status_counts_events_frames_and_positions,
    reopening_the_store_keeps_everything,
    concurrent_appends_all_land_with_unique_positions,
    prepared_batches_append_as_one_batch_in_order,
);
