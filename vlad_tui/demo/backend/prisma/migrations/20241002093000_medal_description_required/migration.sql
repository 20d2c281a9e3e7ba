-- Backfill: medals registered without a description get an empty one.
UPDATE "medals" SET "description" = '' WHERE "description" IS NULL;

-- AlterTable
ALTER TABLE "medals" ALTER COLUMN "description" SET NOT NULL;
