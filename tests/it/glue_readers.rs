//! GLUE readers on small files written in each task's exact layout, and their errors.
use bertology::data::glue::{resolve_data_dir, Example, Label, Split, Task};
use std::path::Path;

fn write(dir: &Path, name: &str, lines: &[&str]) {
    std::fs::write(dir.join(name), lines.join("\n") + "\n").unwrap();
}

fn ex(a: &str, b: Option<&str>, label: Option<Label>) -> Example {
    Example {
        text_a: a.into(),
        text_b: b.map(Into::into),
        label,
    }
}

/// Per task: (file, lines, expected first example, expected count).
fn layouts() -> Vec<(Task, Split, &'static str, Vec<&'static str>, Example)> {
    use Label::*;
    vec![
        (Task::Cola, Split::Train, "train.tsv", vec!["gj04\t1\t\tOur friends won't buy this analysis.", "gj04\t0\t*\tThey drank the pub."],
            ex("Our friends won't buy this analysis.", None, Some(Class(1)))),
        (Task::Cola, Split::Test, "test.tsv", vec!["index\tsentence", "0\tBill whistled past the house."],
            ex("Bill whistled past the house.", None, None)),
        (Task::Sst2, Split::Dev, "dev.tsv", vec!["sentence\tlabel", "it 's a charming and \"often\" affecting journey . \t1"],
            ex("it 's a charming and \"often\" affecting journey . ", None, Some(Class(1)))),
        (Task::Sst2, Split::Test, "test.tsv", vec!["index\tsentence", "0\tuneasy mishmash of styles and genres ."],
            ex("uneasy mishmash of styles and genres .", None, None)),
        (Task::Mrpc, Split::Dev, "dev.tsv", vec!["\u{feff}Quality\t#1 ID\t#2 ID\t#1 String\t#2 String", "1\t1355540\t1355592\tHe said \"foodservice pie\".\tThe foodservice pie business."],
            ex("He said \"foodservice pie\".", Some("The foodservice pie business."), Some(Class(1)))),
        (Task::Mrpc, Split::Test, "test.tsv", vec!["index\t#1 ID\t#2 ID\t#1 String\t#2 String", "0\t1089874\t1089925\tPCCW 's chief.\tCurrent Chief."],
            ex("PCCW 's chief.", Some("Current Chief."), None)),
        (Task::Stsb, Split::Dev, "dev.tsv", vec!["index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore", "0\tmain-captions\tMSRvid\t2012test\t0000\tnone\tnone\tA man with a hard hat is dancing.\tA man wearing a hard hat is dancing.\t5.000"],
            ex("A man with a hard hat is dancing.", Some("A man wearing a hard hat is dancing."), Some(Score(5.0)))),
        (Task::Stsb, Split::Test, "test.tsv", vec!["index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2", "0\tmain-captions\tMSRvid\t2012test\t0024\tnone\tnone\tA girl is styling her hair.\tA girl is brushing her hair."],
            ex("A girl is styling her hair.", Some("A girl is brushing her hair."), None)),
        (Task::Qqp, Split::Train, "train.tsv", vec!["id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate", "133273\t213221\t213222\tHow is the life of a math student?\tWhich level of prepration is enough?\t0"],
            ex("How is the life of a math student?", Some("Which level of prepration is enough?"), Some(Class(0)))),
        (Task::Qqp, Split::Test, "test.tsv", vec!["id\tquestion1\tquestion2", "0\tWhy am I mentally very lonely?\tFind the remainder when [math]23^{24}[/math] is divided by 24,23?"],
            ex("Why am I mentally very lonely?", Some("Find the remainder when [math]23^{24}[/math] is divided by 24,23?"), None)),
        (Task::Mnli, Split::Dev, "dev_matched.tsv", vec!["index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label", "0\t63735\t63735n\tslate\t( ( The p ) )\t( ( The q ) )\t(ROOT p)\t(ROOT q)\tThe new rights are nice enough\tEveryone really likes the newest benefits \tneutral\tentailment\tneutral\tneutral\tneutral\tneutral"],
            ex("The new rights are nice enough", Some("Everyone really likes the newest benefits "), Some(Class(2)))),
        (Task::MnliMm, Split::Dev, "dev_mismatched.tsv", vec!["index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label", "0\t75290\t75290c\tletters\t( p )\t( q )\t(ROOT p)\t(ROOT q)\tYour contribution helped.\tYour contributions were of no help.\tcontradiction\tcontradiction\tcontradiction\tcontradiction\tcontradiction\tcontradiction"],
            ex("Your contribution helped.", Some("Your contributions were of no help."), Some(Class(0)))),
        (Task::Mnli, Split::Train, "train.tsv", vec!["index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label", "0\t31193\t31193n\tgovernment\t( p )\t( q )\t(ROOT p)\t(ROOT q)\tConceptually cream skimming has two dimensions.\tProduct and geography are what make it work.\tneutral\tentailment"],
            ex("Conceptually cream skimming has two dimensions.", Some("Product and geography are what make it work."), Some(Class(1)))),
        (Task::Qnli, Split::Dev, "dev.tsv", vec!["index\tquestion\tsentence\tlabel", "0\tWhat came into force after the new constitution?\tThe Senate came into force.\tentailment"],
            ex("What came into force after the new constitution?", Some("The Senate came into force."), Some(Class(0)))),
        (Task::Rte, Split::Dev, "dev.tsv", vec!["index\tsentence1\tsentence2\tlabel", "0\tDana Reeve died.\tChristopher Reeve had an accident.\tnot_entailment"],
            ex("Dana Reeve died.", Some("Christopher Reeve had an accident."), Some(Class(1)))),
        (Task::Wnli, Split::Train, "train.tsv", vec!["index\tsentence1\tsentence2\tlabel", "0\tI stuck a pin through a carrot.\tThe carrot had a hole.\t1"],
            ex("I stuck a pin through a carrot.", Some("The carrot had a hole."), Some(Class(1)))),
        (Task::Wnli, Split::Test, "test.tsv", vec!["index\tsentence1\tsentence2", "0\tMaude and Dora had seen the trains.\tHorses ran away."],
            ex("Maude and Dora had seen the trains.", Some("Horses ran away."), None)),
    ]
}

#[test]
fn every_task_reads_its_exact_layout() {
    let mut seen = std::collections::HashSet::new();
    for (task, split, file, lines, first) in layouts() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), file, &lines);
        assert_eq!(task.file_name(split), file);
        let examples = task
            .read(dir.path(), split, None)
            .unwrap_or_else(|e| panic!("{task:?} {split:?}: {e}"));
        let rows = if task == Task::Cola && split != Split::Test {
            lines.len()
        } else {
            lines.len() - 1
        };
        assert_eq!(examples.len(), rows, "{task:?} {split:?}");
        assert_eq!(examples[0], first, "{task:?} {split:?}");
        seen.insert(task);
    }
    assert_eq!(seen.len(), 10, "all ten tasks covered");
}

#[test]
fn subsets_and_label_lists() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "train.tsv",
        &["gj04\t1\t\tA.", "gj04\t0\t*\tB.", "gj04\t1\t\tC."],
    );
    assert_eq!(
        Task::Cola
            .read(dir.path(), Split::Train, Some(2))
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        Task::Mnli.labels(),
        vec!["contradiction", "entailment", "neutral"]
    );
    assert_eq!(Task::Rte.labels(), vec!["entailment", "not_entailment"]);
    assert!(Task::Stsb.labels().is_empty() && Task::Stsb.num_outputs() == 1);
}

fn read_error(task: Task, split: Split, lines: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = task.file_name(split);
    write(dir.path(), file, lines);
    let e = task.read(dir.path(), split, None).unwrap_err().to_string();
    assert!(e.contains(file), "error should name the file: {e}");
    e
}

#[test]
fn errors_name_file_line_and_problem() {
    let e = read_error(
        Task::Mrpc,
        Split::Dev,
        &[
            "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String",
            "1\t1\t2\tA\tB",
            "1\t1\t2\tonly four",
        ],
    );
    assert!(
        e.contains("line 3") && e.contains("4 tab-separated fields, expected 5"),
        "{e}"
    );
    let e = read_error(
        Task::Rte,
        Split::Dev,
        &["index\tsentence1\tsentence2\tlabel", "0\tA\tB\tmaybe"],
    );
    assert!(
        e.contains("line 2")
            && e.contains("unknown label \"maybe\"")
            && e.contains("entailment, not_entailment"),
        "{e}"
    );
    let e = read_error(Task::Stsb, Split::Dev, &["index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore", "0\tg\tf\ty\to\ts\ts\tA\tB\tfive"]);
    assert!(e.contains("line 2") && e.contains("not a number"), "{e}");
    let e = read_error(Task::Sst2, Split::Dev, &[]);
    assert!(e.contains("empty file"), "{e}");
    let e = read_error(Task::Sst2, Split::Dev, &["sentence\tlabel"]);
    assert!(e.contains("no examples"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let e = Task::Qnli
        .read(dir.path(), Split::Dev, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("dev.tsv") && e.contains("cannot read"), "{e}");
}

#[test]
fn data_folder_resolution_lists_places_tried() {
    let home = tempfile::tempdir().unwrap();
    let e = resolve_data_dir(Task::Cola, None, home.path())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("CoLA") && e.contains("tried") && e.contains("--data-dir"),
        "{e}"
    );
    let e = resolve_data_dir(Task::Cola, Some(Path::new("/no/such/dir")), home.path())
        .unwrap_err()
        .to_string();
    assert!(e.contains("--data-dir /no/such/dir"), "{e}");
    std::fs::create_dir_all(home.path().join("data/glue/RTE")).unwrap();
    assert_eq!(
        resolve_data_dir(Task::Rte, None, home.path()).unwrap(),
        home.path().join("data/glue/RTE")
    );
}
