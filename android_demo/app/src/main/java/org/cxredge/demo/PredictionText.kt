package org.cxredge.demo

import java.util.Locale
import org.cxredge.core.Prediction

/**
 * The text the app shows under the image: label (or the referral), probabilities, crop, lung fraction
 * and flags, members, timings.
 */
object PredictionText {
    fun format(p: Prediction, members: List<String>, method: String): String {
        val out = StringBuilder()
        out.append("label: ").append(p.label()).append('\n')
        p.referral()?.let { out.append("REFER TO A RADIOLOGIST: ").append(it).append('\n') }
        val probs = p.probs()
        val width = p.labels().maxOf { it.length }
        p.labels().forEachIndexed { i, label ->
            val bar = "█".repeat((probs[i] * 20).toInt())
            out.append(String.format(Locale.ROOT, "  %-${width}s %.4f %s%n", label, probs[i], bar))
        }
        out.append("crop: ").append(p.cropStatus())
        if (p.cropReason().isNotEmpty()) {
            out.append(" (").append(p.cropReason()).append(')')
        }
        out.append(" region ").append(p.camRegion()).append('\n')
        out.append("heat map: ").append(if (p.cam() != null) "of the predicted label" else "none").append('\n')
        p.lungFraction()?.let {
            out.append(String.format(Locale.ROOT, "lung fraction: %.3f (share of the heat map inside the lungs)", it))
            p.flags().forEach { flag -> out.append(" ⚠ ").append(flag) }
            out.append('\n')
        }
        out.append("members: ").append(members.joinToString()).append(" (").append(method).append(")\n")
        out.append("timings:")
        for ((stage, ms) in p.timingsMs()) {
            out.append(String.format(Locale.ROOT, " %s %.1f ms;", stage, ms))
        }
        return out.toString()
    }
}
