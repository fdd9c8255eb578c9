//! Secrets come from standard input (first line) when the named flag is given, or from a
//! prompt on a terminal; never from arguments, where `ps` would show them.

use std::io::{BufRead, IsTerminal};

use otpd_proto::Secret;
use zeroize::Zeroizing;

use crate::Failure;

pub fn read(what: &str, from_stdin: bool, flag: &str, confirm: bool) -> Result<Secret, Failure> {
    let value = if from_stdin {
        let mut line = Zeroizing::new(String::new());
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| Failure::Usage(format!("cannot read standard input: {e}")))?;
        Zeroizing::new(line.trim_end_matches(['\n', '\r']).to_string())
    } else if std::io::stdin().is_terminal() {
        let first = Zeroizing::new(
            rpassword::prompt_password(format!("{what}: "))
                .map_err(|e| Failure::Usage(format!("cannot read from the terminal: {e}")))?,
        );
        if confirm {
            let again = Zeroizing::new(
                rpassword::prompt_password(format!("{what} (again): "))
                    .map_err(|e| Failure::Usage(format!("cannot read from the terminal: {e}")))?,
            );
            if *again != *first {
                return Err(Failure::Usage(
                    "the two entries differ; nothing changed".into(),
                ));
            }
        }
        first
    } else {
        return Err(Failure::Usage(format!(
            "{what} needed: pass {flag} and give it on standard input, or run on a terminal"
        )));
    };
    if value.is_empty() {
        return Err(Failure::Usage(format!("{what} is empty; nothing changed")));
    }
    Ok(Secret(value))
}
