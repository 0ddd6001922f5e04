// Auto-J's pairwise_eval figures over judged batch rows, as the native `webjudge judge` reports
// them (src/judge/metrics.rs): agreement with the human label — judged in both orders, a row
// counts only when both verdicts equal the label — and consistency, the share of swapped rows
// whose verdict does not flip. An unparsed verdict is wrong and, when swapped, inconsistent.
// Rows without a label, or that could not be judged, are left out; figures are per scenario
// group (Auto-J's codes/leaderboard/utils_constants.py) and overall.

const GROUPS = {
  Summarization: ["post_summarization", "text_summarization", "note_summarization"],
  "Exam Questions": ["math_reasoning", "solving_exam_question_with_math", "solving_exam_question_without_math"],
  Code: [
    "code_simplification",
    "code_generation",
    "explaining_code",
    "code_correction_rewriting",
    "code_to_code_translation",
  ],
  Rewriting: ["text_simplification", "language_polishing", "instructional_rewriting", "text_correction", "paraphrasing"],
  "Creative Writing": [
    "writing_song_lyrics",
    "writing_social_media_post",
    "writing_blog_post",
    "writing_personal_essay",
    "creative_writing",
    "writing_advertisement",
    "writing_marketing_materials",
    "writing_presentation_script",
    "counterfactual",
  ],
  "Functional Writing": [
    "writing_product_description",
    "writing_job_application",
    "writing_news_article",
    "writing_biography",
    "writing_email",
    "writing_legal_document",
    "writing_technical_document",
    "writing_scientific_paper",
    "functional_writing",
    "writing_cooking_recipe",
  ],
  "General Communication": [
    "asking_how_to_question",
    "open_question",
    "analyzing_general",
    "explaining_general",
    "seeking_advice",
    "recommendation",
    "value_judgement",
    "verifying_fact",
    "chitchat",
    "roleplay",
    "planning",
    "brainstorming",
  ],
  "NLP Tasks": [
    "ranking",
    "text_to_text_translation",
    "data_analysis",
    "classification_identification",
    "title_generation",
    "question_generation",
    "reading_comprehension",
    "keywords_extraction",
    "information_extraction",
    "topic_modeling",
    "others",
  ],
};

const GROUP_OF = new Map(Object.entries(GROUPS).flatMap(([group, scenarios]) => scenarios.map((s) => [s, group])));

// records: batch records (batch-data.js), { scenario, label, winner, swapped_winner_mapped?,
// error? } with label and winners "response1" | "response2" | "tie" | null. Returns
// [{ name, rows, agreement, consistency }] for each group with rows, then "Overall", in
// percent; consistency is null without swapped rows.
export function pairwiseMetrics(records) {
  const tallies = new Map();
  const tally = (name) => {
    if (!tallies.has(name)) tallies.set(name, { name, rows: 0, correct: 0, swapped: 0, consistent: 0 });
    return tallies.get(name);
  };
  for (const record of records) {
    if (record.error || record.label == null) continue;
    const swapped = record.swapped_winner_mapped !== undefined;
    const correct =
      record.winner === record.label && (!swapped || record.swapped_winner_mapped === record.label);
    const consistent = swapped && record.winner != null && record.winner === record.swapped_winner_mapped;
    const group = GROUP_OF.get(record.scenario);
    for (const t of group ? [tally(group), tally("Overall")] : [tally("Overall")]) {
      t.rows += 1;
      t.correct += correct ? 1 : 0;
      t.swapped += swapped ? 1 : 0;
      t.consistent += consistent ? 1 : 0;
    }
  }
  const order = [...Object.keys(GROUPS), "Overall"];
  return order
    .filter((name) => tallies.has(name))
    .map((name) => {
      const t = tallies.get(name);
      return {
        name,
        rows: t.rows,
        agreement: (100 * t.correct) / t.rows,
        consistency: t.swapped ? (100 * t.consistent) / t.swapped : null,
      };
    });
}
