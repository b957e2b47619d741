//! The evaluation crate's errors carry the option and its value, or the
//! file and its line: these tests match the variants, not the wording.

use eval::error::EvalError;
use eval::Folds;

#[test]
fn fold_options_name_the_flag_and_the_value() {
    let all: Vec<usize> = (0..10).collect();
    match Folds::kfold(10, &all, 11, 1, 1) {
        Err(EvalError::Option { flag, value, .. }) => {
            assert_eq!((flag, value.as_str()), ("--folds", "11"))
        }
        other => panic!("{other:?}"),
    }
    match Folds::kfold(10, &all, 5, 0, 1) {
        Err(EvalError::Option { flag, value, .. }) => {
            assert_eq!((flag, value.as_str()), ("--repeats", "0"))
        }
        other => panic!("{other:?}"),
    }
    let groups: Vec<Option<String>> = (0..10).map(|i| Some(format!("g{}", i % 4))).collect();
    match Folds::by_group(&groups, 9, 1, 1) {
        Err(EvalError::Option { flag, value, .. }) => {
            assert_eq!((flag, value.as_str()), ("--folds", "9"))
        }
        other => panic!("{other:?}"),
    }
    let one: Vec<Option<String>> = vec![Some("g".into()); 5];
    assert!(matches!(
        Folds::by_group(&one, 0, 1, 1),
        Err(EvalError::TooFewGroups { found: 1 })
    ));
}

#[test]
fn fold_file_errors_name_the_file_and_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
    let all: Vec<usize> = (0..4).collect();
    let p = dir.path().join("folds.csv");
    let read = |text: &str| {
        std::fs::write(&p, text).unwrap();
        Folds::from_csv(&p, &ids, &all).unwrap_err()
    };
    let line_of = |e: EvalError| match e {
        EvalError::File { path, line, .. } => {
            assert!(path.ends_with("folds.csv"));
            line
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(line_of(read("id,fold\n")), Some(1));
    assert_eq!(line_of(read("id,repeat,fold\na,1,1\nzz,1,2\n")), Some(3));
    assert_eq!(line_of(read("id,repeat,fold\na,1,1\nb,1,x\n")), Some(3));
    // Whole-file faults have no line.
    assert_eq!(line_of(read("id,repeat,fold\na,1,1\nb,1,2\n")), None);
}
