//! Temperatures from `/sys/class/hwmon/*/temp*_input` (millidegrees Celsius), where the
//! hardware exposes them; virtual machines usually have none.

use serde::Serialize;

use super::Root;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Temperature {
    /// Chip name and sensor label, e.g. `coretemp/Package id 0`.
    pub sensor: String,
    pub celsius: f64,
}

pub fn read_temperatures(root: &Root) -> Vec<Temperature> {
    let Ok(chips) = root.list("sys/class/hwmon") else {
        return Vec::new();
    };
    let text = |path: &str| root.read(path).map(|s| s.trim().to_owned());
    let mut found = Vec::new();
    for chip in chips {
        let dir = format!("sys/class/hwmon/{chip}");
        let name = text(&format!("{dir}/name")).unwrap_or_default();
        let Ok(entries) = root.list(&dir) else { continue };
        for input in entries.iter().filter(|f| f.starts_with("temp") && f.ends_with("_input")) {
            let Some(milli) = text(&format!("{dir}/{input}")).ok().and_then(|s| s.parse::<i64>().ok()) else {
                continue;
            };
            let stem = input.trim_end_matches("_input");
            let label = if entries.iter().any(|e| e == &format!("{stem}_label")) {
                text(&format!("{dir}/{stem}_label")).unwrap_or_else(|_| stem.to_owned())
            } else {
                stem.to_owned()
            };
            found.push(Temperature { sensor: format!("{name}/{label}"), celsius: milli as f64 / 1000.0 });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_labelled_and_unlabelled_sensors() {
        let dir = tempfile::tempdir().unwrap();
        let chip = dir.path().join("sys/class/hwmon/hwmon0");
        std::fs::create_dir_all(&chip).unwrap();
        std::fs::write(chip.join("name"), "coretemp\n").unwrap();
        std::fs::write(chip.join("temp1_input"), "45500\n").unwrap();
        std::fs::write(chip.join("temp1_label"), "Package id 0\n").unwrap();
        std::fs::write(chip.join("temp2_input"), "39000\n").unwrap();
        let temps = read_temperatures(&Root::new(dir.path()));
        assert_eq!(
            temps,
            [
                Temperature { sensor: "coretemp/Package id 0".into(), celsius: 45.5 },
                Temperature { sensor: "coretemp/temp2".into(), celsius: 39.0 },
            ]
        );
        assert!(read_temperatures(&Root::new("/nonexistent")).is_empty());
    }
}
