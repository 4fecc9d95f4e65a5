//! `admin config …`: the configuration contract ([`secure_ml_core::config::VARIABLES`]), so
//! operators and scripts read it from its one source instead of keeping copies.

use std::io::Write;

use secure_ml_core::config::{PLATFORM, Presence, Program, VARIABLES, Var};

use crate::error::AdminError;

/// Prints the variables `programs` read (every variable when empty): one name per line, then
/// with `platform` the ones Lambda itself sets (region, credentials); with `json` each contract
/// entry in full.
pub fn vars(
    programs: &[Program],
    platform: bool,
    json: bool,
    out: &mut impl Write,
) -> Result<(), AdminError> {
    let selected: Vec<&Var> = VARIABLES
        .iter()
        .copied()
        .filter(|v| programs.is_empty() || programs.iter().any(|p| v.read_by(*p)))
        .collect();
    if json {
        let entries: Vec<serde_json::Value> = selected
            .iter()
            .map(|v| {
                serde_json::json!({
                    "name": v.name,
                    "readers": v.readers.iter().map(|p| p.name()).collect::<Vec<_>>(),
                    "default": v.default(),
                    "required": v.presence == Presence::Required,
                    "one_of": match v.presence { Presence::OneOf(other) => Some(other), _ => None },
                    "local_only": v.local_only,
                    "meaning": v.meaning,
                })
            })
            .collect();
        let text = serde_json::to_string_pretty(&entries).unwrap_or_default();
        writeln!(out, "{text}")?;
    } else {
        for var in selected {
            writeln!(out, "{}", var.name)?;
        }
        if platform {
            for name in PLATFORM {
                writeln!(out, "{name}")?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(programs: &[Program]) -> Vec<String> {
        let mut out = Vec::new();
        vars(programs, false, false, &mut out).unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn lists_exactly_what_the_programs_read() {
        let predict = names(&[Program::Predict]);
        assert!(predict.contains(&"RATE_LIMIT_TABLE".to_owned()));
        assert!(!predict.contains(&"CLIENTS_TABLE".to_owned()));
        let both = names(&[Program::Predict, Program::Token]);
        assert!(
            both.contains(&"CLIENTS_TABLE".to_owned())
                && both.contains(&"PREDICT_BURST".to_owned())
        );
        assert_eq!(names(&[]).len(), VARIABLES.len());
    }
}
