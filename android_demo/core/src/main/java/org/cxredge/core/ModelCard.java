package org.cxredge.core;

import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

/**
 * The model card of a format-3 bundle ({@code manifest.card}, Python's {@code cxr_edge.bundle.card.ModelCard}):
 * intended use, the fixed disclaimer, the task, the training data, leave-one-source-out results of
 * the recipe ({@code loso.report}: per held-out source and pooled, with intervals), in-distribution
 * results, the shortcut audit, failure modes and lung-evidence statistics. The structured parts an
 * app shows have accessors; the rest stays as parsed JSON.
 */
public final class ModelCard {
    /** The disclaimer every card carries ({@code cxr_edge.bundle.card.DISCLAIMER}). */
    public static final String DISCLAIMER =
            "Not a medical device. A research artefact: do not use it to make clinical decisions.";
    /** What a card without leave-one-source-out results says ({@code cxr_edge.bundle.card.NO_LOSO}). */
    public static final String NO_LOSO = "no leave-one-source-out evaluation recorded";

    private static final Set<String> KEYS = new TreeSet<>(Arrays.asList("intended_use", "task", "disclaimer",
            "training_data", "loso", "in_distribution", "shortcut_audit", "failure_modes", "lung_evidence"));

    private final String intendedUse;
    private final List<String> labels;
    private final Map<String, String> labelMap;
    private final List<String> failureModes;
    private final String losoRecipe;
    private final String losoNote;
    private final Map<String, Object> losoReport;
    private final Map<String, Object> json;

    private ModelCard(JsonObject o) {
        o.requireKnownKeys(KEYS, "model card");
        String disclaimer = o.string("disclaimer", DISCLAIMER);
        if (!DISCLAIMER.equals(disclaimer)) {
            throw new BundleFormatException(o.child("disclaimer"), "a model card must carry the disclaimer", DISCLAIMER,
                    disclaimer);
        }
        intendedUse = o.string("intended_use");
        if (intendedUse.trim().isEmpty()) {
            throw new BundleFormatException(o.child("intended_use"), "a model card needs its intended use", "a sentence",
                    "''");
        }
        JsonObject task = o.object("task");
        labels = Collections.unmodifiableList(task.stringList("labels"));
        labelMap = stringMap(task, "label_map");
        failureModes = Collections.unmodifiableList(
                o.has("failure_modes") ? o.stringList("failure_modes") : Collections.<String>emptyList());
        JsonObject loso = o.optionalObject("loso");
        losoRecipe = loso == null ? "" : loso.string("recipe", "");
        losoNote = loso == null ? NO_LOSO : loso.string("note", NO_LOSO);
        JsonObject report = loso == null ? null : loso.optionalObject("report");
        if (report != null) {
            for (String key : Arrays.asList("labels", "by_source", "pooled", "cells", "selection_score")) {
                if (!report.has(key)) {
                    throw new BundleFormatException(report.path(), "not a LOSO report", "keys labels, by_source, "
                            + "pooled, cells, selection_score", "missing " + key);
                }
            }
        }
        losoReport = report == null ? null : report.asMap();
        json = o.asMap();
    }

    static ModelCard fromJson(JsonObject o) {
        return new ModelCard(o);
    }

    static Map<String, String> stringMap(JsonObject o, String key) {
        Map<String, String> out = new LinkedHashMap<>();
        JsonObject m = o.optionalObject(key);
        if (m != null) {
            for (String k : m.keys()) {
                out.put(k, m.string(k));
            }
        }
        return Collections.unmodifiableMap(out);
    }

    /** What the bundle is for. */
    public String intendedUse() {
        return intendedUse;
    }

    /** Always {@link #DISCLAIMER}. */
    public String disclaimer() {
        return DISCLAIMER;
    }

    /** The task's labels (the bundle's). */
    public List<String> labels() {
        return labels;
    }

    /** Manifest label to bundle label. */
    public Map<String, String> labelMap() {
        return labelMap;
    }

    /** Known failure modes. */
    public List<String> failureModes() {
        return failureModes;
    }

    /** The LOSO recipe's name ("" when none). */
    public String losoRecipe() {
        return losoRecipe;
    }

    /** How to read the LOSO numbers, or {@link #NO_LOSO}. */
    public String losoNote() {
        return losoNote;
    }

    /** {@code cxr_edge.evaluation.loso.score()} output (by_source, pooled, ...), or null when none was recorded. */
    public Map<String, Object> losoReport() {
        return losoReport;
    }

    /** The whole card as parsed JSON. */
    public Map<String, Object> json() {
        return json;
    }
}
