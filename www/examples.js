// Example inputs for the page's buttons: short rows hand-picked from Auto-J's test data
// (GAIR-NLP/auto-j, data/test/), copied verbatim. Line numbers are 1-based in the named file.

export const PAIRWISE = [
  {
    // testdata_pairwise.jsonl line 782 (scenario text_to_text_translation, label 0: response 1 better)
    title: "Swiss German",
    language: "en",
    query: 'translate "good day, how are you" to swiss german',
    response1: '"Guete Tag, wie geits dir?"',
    response2: "Guten Tag, wie geht's?",
  },
  {
    // testdata_pairwise.jsonl line 410 (scenario brainstorming, label 2: tie)
    title: "Colours",
    language: "en",
    query: "Name 3 colors that start with a, b or c.",
    response1: "Blue, Yellow, and Green.",
    response2: "A - red\nB - blue\nC - cyan",
  },
];

export const SINGLE = [
  {
    // testdata_critique.jsonl line 84 (scenario open_question)
    title: "Feathers",
    language: "en",
    query: "What weighs more, two pounds of feathers or one pound of bricks?",
    response: "One pound of bricks.",
  },
  {
    // zh_testdata_critique.jsonl line 84 (scenario open_question), for the Chinese protocol
    title: "羽毛 (Chinese)",
    language: "zh",
    query: "两磅的羽毛和一磅的砖头哪个更重？",
    response: "一磅的砖。",
  },
];
