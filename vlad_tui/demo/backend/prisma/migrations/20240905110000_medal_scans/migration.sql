-- AlterTable
ALTER TABLE "medals" ADD COLUMN "last_scanned_at" TIMESTAMP(3);

-- CreateTable
CREATE TABLE "medal_scans" (
    "id" SERIAL NOT NULL,
    "medal_id" INTEGER NOT NULL,
    "city" TEXT,
    "user_agent" TEXT,
    "scanned_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "medal_scans_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "medal_scans_medal_id_idx" ON "medal_scans"("medal_id");

-- AddForeignKey
ALTER TABLE "medal_scans" ADD CONSTRAINT "medal_scans_medal_id_fkey" FOREIGN KEY ("medal_id") REFERENCES "medals"("id") ON DELETE CASCADE ON UPDATE CASCADE;
