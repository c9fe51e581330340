//! Progress of map runs on a terminal: one line per map run with the items done, failures,
//! rate and elapsed time, and where the results are once it ends. Nothing is drawn when
//! stderr is not a terminal (logs and scripts see only the final output).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use stepmap_worker::{MapRunProgress, ProgressObserver};

/// A progress observer drawing on stderr, or `None` when stderr is not a terminal.
pub fn observer(data_dir: &Path) -> Option<ProgressObserver> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let display = Display {
        bars: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
        runs: Mutex::new(HashMap::new()),
        data_dir: data_dir.to_path_buf(),
    };
    let display = Arc::new(display);
    Some(Arc::new(move |progress: &MapRunProgress| display.update(progress)))
}

struct Display {
    bars: MultiProgress,
    runs: Mutex<HashMap<String, ProgressBar>>,
    data_dir: PathBuf,
}

impl Display {
    fn update(&self, progress: &MapRunProgress) {
        let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        let bar = runs.entry(progress.map_run_arn.clone()).or_insert_with(|| {
            let bar = self.bars.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix}  {human_pos} items  {elapsed_precise}  {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            let name = progress.map_run_arn.rsplit(':').nth(1).unwrap_or("map run").to_string();
            bar.set_prefix(name);
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            bar
        });
        bar.set_position(progress.items_done);
        let rate = progress.items_done as f64 / bar.elapsed().as_secs_f64().max(0.001);
        bar.set_message(format!(
            "{rate:.0} items/s  {} failed  {} child executions",
            progress.items_failed, progress.children_done
        ));
        if progress.finished {
            let results = match &progress.manifest {
                Some(manifest) => format!("results: {}", self.data_dir.join(manifest).display()),
                None => "done".to_string(),
            };
            bar.finish_with_message(format!(
                "{} failed, {} child executions; {results}",
                progress.items_failed, progress.children_done
            ));
            runs.remove(&progress.map_run_arn);
        }
    }
}
